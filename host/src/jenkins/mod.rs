//! Jenkins HTTP client, demand detection and node registration.
