//! End-to-end test support for cutover.
