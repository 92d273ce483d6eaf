//! SSH bootstrap of instances into Jenkins agents.
