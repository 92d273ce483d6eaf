//! The Java release a `java -version` banner names, to refuse a JRE older than the controller
//! needs before the agent is started (an agent on too old a Java dies at once with a class
//! version error that only the agent log shows).
//!
//! Banners (stderr) name the version in quotes on the line with ` version "`: `1.8.0_392`
//! (Java 8 and older: `1.<major>`), `11.0.21`, `17.0.9`, `21` (a GA release without update
//! number), `22-ea`. Lines before it (`Picked up JAVA_TOOL_OPTIONS: ...`) are skipped.

/// What the banner says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JavaVersion {
    /// Feature release: 8 for `1.8.0_392`, 17 for `17.0.9`, 21 for `21`.
    pub major: u32,
    /// The quoted version string, as printed.
    pub text: String,
}

/// The version of the first banner line that names one (`... version "<v>" ...`).
pub fn parse_java_version(banner: &str) -> Option<JavaVersion> {
    banner.lines().find_map(|line| {
        let (_, rest) = line.split_once(" version \"")?;
        let (text, _) = rest.split_once('"')?;
        Some(JavaVersion {
            major: major_of(text)?,
            text: text.to_string(),
        })
    })
}

/// `1.8.0_392` -> 8; `17.0.9` -> 17; `21` -> 21; `22-ea` -> 22.
fn major_of(version: &str) -> Option<u32> {
    let number = |s: &str| -> Option<u32> {
        let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    let mut parts = version.split('.');
    let first = number(parts.next()?)?;
    if first == 1 {
        // The pre-9 scheme: 1.<major>.0_<update>.
        number(parts.next()?)
    } else {
        Some(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `java -version` of real JDKs, verbatim (stderr).
    const BANNERS: &[(&str, u32, &str)] = &[
        (
            "openjdk version \"1.8.0_392\"\n\
             OpenJDK Runtime Environment (Temurin)(build 1.8.0_392-b08)\n\
             OpenJDK 64-Bit Server VM (Temurin)(build 25.392-b08, mixed mode)\n",
            8,
            "1.8.0_392",
        ),
        (
            "java version \"1.8.0_391\"\n\
             Java(TM) SE Runtime Environment (build 1.8.0_391-b13)\n\
             Java HotSpot(TM) 64-Bit Server VM (build 25.391-b13, mixed mode)\n",
            8,
            "1.8.0_391",
        ),
        (
            "openjdk version \"11.0.21\" 2023-10-17\n\
             OpenJDK Runtime Environment Temurin-11.0.21+9 (build 11.0.21+9)\n\
             OpenJDK 64-Bit Server VM Temurin-11.0.21+9 (build 11.0.21+9, mixed mode)\n",
            11,
            "11.0.21",
        ),
        (
            "openjdk version \"17.0.9\" 2023-10-17 LTS\n\
             OpenJDK Runtime Environment Corretto-17.0.9.8.1 (build 17.0.9+8-LTS)\n\
             OpenJDK 64-Bit Server VM Corretto-17.0.9.8.1 (build 17.0.9+8-LTS, mixed mode, sharing)\n",
            17,
            "17.0.9",
        ),
        (
            "openjdk version \"21\" 2023-09-19\n\
             OpenJDK Runtime Environment (build 21+35-2513)\n\
             OpenJDK 64-Bit Server VM (build 21+35-2513, mixed mode, sharing)\n",
            21,
            "21",
        ),
        (
            "java version \"21.0.1\" 2023-10-17 LTS\n\
             Java(TM) SE Runtime Environment (build 21.0.1+12-LTS-29)\n\
             Java HotSpot(TM) 64-Bit Server VM (build 21.0.1+12-LTS-29, mixed mode, sharing)\n",
            21,
            "21.0.1",
        ),
        (
            "Picked up JAVA_TOOL_OPTIONS: -Dfile.encoding=UTF-8\n\
             openjdk version \"17.0.13\" 2024-10-15\n\
             OpenJDK Runtime Environment (Red_Hat-17.0.13.0.11-1) (build 17.0.13+11-LTS)\n",
            17,
            "17.0.13",
        ),
        (
            "openjdk version \"22-ea\" 2024-03-19\n\
             OpenJDK Runtime Environment (build 22-ea+27-2262)\n",
            22,
            "22-ea",
        ),
    ];

    #[test]
    fn real_banners_give_their_feature_release() {
        for (banner, major, text) in BANNERS {
            let v = parse_java_version(banner).unwrap_or_else(|| panic!("no version in {banner}"));
            assert_eq!((v.major, v.text.as_str()), (*major, *text), "{banner}");
        }
    }

    #[test]
    fn text_without_a_version_gives_none() {
        assert_eq!(parse_java_version(""), None);
        assert_eq!(parse_java_version("sh: 1: java: not found\n"), None);
        assert_eq!(parse_java_version("java version \"x.y\"\n"), None);
        assert_eq!(parse_java_version("java version \"17\n"), None);
    }
}
