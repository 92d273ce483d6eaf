//! Signed Alibaba Cloud ECS/VPC client.
