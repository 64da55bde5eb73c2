//! owampd internal messages and their transport.
