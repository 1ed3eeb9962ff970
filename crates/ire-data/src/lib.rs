//! ire-data
