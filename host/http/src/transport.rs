//! Transport errors said plainly: what failed (connection refused, no answer in time, a name
//! that does not resolve...) and where, once.
//!
//! `reqwest`'s own message is "error sending request for url (<whole url>)", with the cause
//! three sources down; printed as a chain it repeats itself, and a long query string drowns
//! the cause.

use std::error::Error as _;

/// The cause of a failed request in a few words, e.g. `connection refused`,
/// `no answer within the read timeout`, `cannot resolve the host name`.
pub fn transport_cause(e: &reqwest::Error) -> String {
    let innermost = innermost_source(e);
    if let Some(io) = find_io_error(e) {
        use std::io::ErrorKind::*;
        match io.kind() {
            ConnectionRefused => return "connection refused".into(),
            ConnectionReset => return "connection reset by the peer".into(),
            ConnectionAborted => return "connection aborted".into(),
            TimedOut => return "no answer within the timeout".into(),
            HostUnreachable | NetworkUnreachable => return format!("unreachable ({io})"),
            UnexpectedEof => return "the server closed the connection without answering".into(),
            _ => {}
        }
    }
    if e.is_timeout() {
        return if e.is_connect() { "cannot connect within the connect timeout".into() } else { "no answer within the timeout".into() };
    }
    let text = innermost.to_string();
    if text.contains("failed to lookup address") || text.contains("dns error") {
        return format!("cannot resolve the host name ({text})");
    }
    if e.is_connect() {
        return format!("cannot connect: {text}");
    }
    text
}

/// Where a failed request went: its URL without the query string (which can be long,
/// percent-encoded and secret).
pub fn request_target(e: &reqwest::Error) -> Option<String> {
    let mut url = e.url()?.clone();
    url.set_query(None);
    url.set_fragment(None);
    let _ = url.set_password(None);
    Some(url.to_string())
}

fn innermost_source(e: &reqwest::Error) -> &(dyn std::error::Error + 'static) {
    let mut current: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = current.source() {
        current = next;
    }
    current
}

fn find_io_error(e: &reqwest::Error) -> Option<&std::io::Error> {
    let mut current = e.source();
    while let Some(err) = current {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        current = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_connection_is_said_plainly_with_the_url_and_no_query() {
        // A port nobody listens on: bind one, then free it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let long_query: String = "name=x&json=".to_owned() + &"%7B%22a%22%3A1%7D".repeat(30);
        let url = format!("http://127.0.0.1:{port}/computer/doCreateItem?{long_query}");
        let e = reqwest::Client::new().post(&url).send().await.unwrap_err();
        assert_eq!(transport_cause(&e), "connection refused");
        assert_eq!(request_target(&e).unwrap(), format!("http://127.0.0.1:{port}/computer/doCreateItem"));
    }

    #[tokio::test]
    async fn a_silent_server_is_a_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let client = reqwest::Client::builder().read_timeout(std::time::Duration::from_millis(200)).build().unwrap();
        let e = client.get(&url).send().await.unwrap_err();
        assert!(transport_cause(&e).starts_with("no answer within"), "{}", transport_cause(&e));
        drop(listener);
    }
}
