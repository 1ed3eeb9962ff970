//! ire-llama
