//! /metrics, /status, /healthz.
