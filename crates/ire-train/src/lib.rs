//! ire-train
