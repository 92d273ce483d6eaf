//! The TOML configuration.
