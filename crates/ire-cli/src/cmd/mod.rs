//! One module per `ire` subcommand.

pub mod bench;
pub mod compare;
pub mod config;
pub mod export;
pub mod init;
pub mod memory;
pub mod prepare;
pub mod sample;
pub mod score;
pub mod sharpness;
pub mod sweep;
pub mod toy;
pub mod train;
