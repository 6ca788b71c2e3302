//! Parts of the command-line program that are not the validator itself: `compare`, the side-by-side
//! harness (it spawns child processes, reads /proc, draws a chart and drops its own table on both
//! databases, none of which belongs in the library).

pub mod compare;
