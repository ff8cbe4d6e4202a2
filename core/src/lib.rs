//! cutover-core
