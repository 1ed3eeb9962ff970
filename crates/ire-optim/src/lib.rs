//! ire-optim
