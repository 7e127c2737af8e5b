//! `outln!`/`out!`: stdout writes that end quietly when the reader goes away.

macro_rules! outln {
    () => { $crate::output::write_out(format_args!(""), true) };
    ($($t:tt)*) => { $crate::output::write_out(format_args!($($t)*), true) };
}

macro_rules! out {
    ($($t:tt)*) => { $crate::output::write_out(format_args!($($t)*), false) };
}
