//! ecs-policy-sdk
