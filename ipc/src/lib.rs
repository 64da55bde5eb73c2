//! owampd internal messages and their transport.

pub mod tester;
