//! Plaintext endpoints: an `http://` Jenkins URL or ECS/VPC endpoint sends the API token, the
//! agent secrets or the signed requests in the clear. Allowed (emulators, a local TLS proxy),
//! but warned about loudly at start and in `check`, except for loopback addresses.

use super::Config;

/// Whether `url` is `http://` to a host other than a loopback address (`localhost`,
/// `127.0.0.0/8`, `::1`). Other schemes and URLs without a host are left to the clients,
/// which name the error.
pub fn is_plaintext_remote(url: &str) -> bool {
    let Some(rest) = url.get(..7).filter(|s| s.eq_ignore_ascii_case("http://")).map(|_| &url[7..]) else {
        return false;
    };
    // The authority ends at the path, query or fragment; user info ends at the last `@`.
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    if host.is_empty() {
        return false;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => !ip.is_loopback(),
        Err(_) => !host.eq_ignore_ascii_case("localhost"),
    }
}

impl Config {
    /// One line per plaintext endpoint to a remote host, naming the key and what travels in
    /// the clear.
    pub fn plaintext_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if is_plaintext_remote(&self.jenkins.url) {
            out.push(format!(
                "jenkins.url {:?} is plain http to a remote host: the API token and every agent secret travel in the clear",
                self.jenkins.url
            ));
        }
        for (key, value) in [("cloud.endpoint", &self.cloud.endpoint), ("cloud.vpc-endpoint", &self.cloud.vpc_endpoint)] {
            if let Some(v) = value.as_deref().filter(|v| is_plaintext_remote(v)) {
                out.push(format!(
                    "{key} {v:?} is plain http to a remote host: signed requests (and any STS token) travel in the clear"
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_remote_http_is_plaintext() {
        for url in ["http://jenkins.example.com/", "HTTP://10.0.0.5:8080/", "http://[2001:db8::1]/", "http://127.0.0.1@evil.example/"] {
            assert!(is_plaintext_remote(url), "{url}");
        }
        for url in [
            "https://jenkins.example.com/",
            "http://127.0.0.1:8080/",
            "http://127.9.9.9/",
            "http://localhost:8080/",
            "http://LOCALHOST/",
            "http://[::1]:80/",
            "http://user:pw@127.0.0.1/",
            "ecs.cn-hangzhou.aliyuncs.com",
        ] {
            assert!(!is_plaintext_remote(url), "{url}");
        }
    }
}
