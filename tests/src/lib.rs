//! End-to-end test support for cutover: the real services started by `scripts/testenv up`
//! and the specimen application that stands in for a vendor's container.
//!
//! Every test starts from [`TestEnv::get`], which reads the env file `scripts/testenv`
//! writes (`$CUTOVER_TESTENV_FILE`, else `${CUTOVER_TESTENV_DIR:-/var/tmp/cutover-testenv}/env`).
//! A missing file or a service that does not answer fails the test with a message naming
//! `scripts/testenv up`; nothing here skips.
//!
//! Tests run in parallel under nextest, so everything they create is uniquely named
//! ([`unique_name`]), listens on a free port ([`free_port`]) and is removed on drop:
//! [`ScratchDatabase`], [`SpecimenProcess`], [`SpecimenContainer`], [`DockerVolume`].

mod corpus;
mod database;
mod docker;
mod env;
mod files;
mod http;
mod names;
mod s3;
mod specimen;

pub use corpus::IndependentState;
pub use database::{Engine, MigrationRun, ScratchDatabase};
pub use docker::{DockerVolume, docker, docker_command, is_image};
pub use env::{EnvError, SshHost, TestEnv, UP_HINT};
pub use files::{assert_no_file_contains, files_under};
pub use http::{Items, SpecimenClient, StoredItem};
pub use names::{free_port, unique_name};
pub use s3::S3Server;
pub use specimen::{SpecimenContainer, SpecimenProcess};
