//! ecs-provisioner: elastic Jenkins build agents on Alibaba Cloud ECS.
//!
//! Data flows one way through the engine: observe -> decide (policy) -> enforce -> act.
//!
//! This crate wires the component crates together: the adapters that give the engine's ports
//! real ECS, Jenkins, SSH and policy backends, and the commands of the binary (`app`). The
//! component crates are re-exported under their short names, so `ecs_provisioner::ecs` is the
//! ECS client, `ecs_provisioner::sim` the emulators, and so on.
pub mod adapters;
pub mod app;
pub mod version;

pub use ecsp_config as config;
pub use ecsp_ecs as ecs;
pub use ecsp_engine as engine;
pub use ecsp_ha as ha;
pub use ecsp_jenkins as jenkins;
pub use ecsp_journal as journal;
pub use ecsp_policy as policy;
pub use ecsp_replay as replay;
pub use ecsp_server as server;
pub use ecsp_sim as sim;
pub use ecsp_ssh as ssh;
