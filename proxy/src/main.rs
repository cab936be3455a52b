//! The `sluice` binary: the library's built-in protocols and codecs, run from the
//! command line (see the library's documentation for adding codecs of your own).

use std::process::ExitCode;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: sluice::alloc::Allocator = sluice::alloc::Allocator;

fn main() -> ExitCode {
    sluice::Sluice::builder().run_from_args()
}
