//! ecs-provisioner: elastic Jenkins build agents on Alibaba Cloud ECS.
//!
//! Data flows one way through the engine: observe -> decide (policy) -> enforce -> act.
pub mod app;
pub mod body_limit;
pub mod config;
pub mod ecs;
pub mod engine;
pub mod jenkins;
pub mod policy;
pub mod server;
pub mod sim;
pub mod ssh;
