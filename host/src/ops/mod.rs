//! Operators' chores over the client layer: reading a topic without consuming it, a group's
//! dead letters and their re-delivery, and offset resets through the broker.

pub mod dlq;
pub mod reader;
pub mod reset;
