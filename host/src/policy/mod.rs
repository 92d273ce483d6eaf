//! The wasmtime policy runtime.
