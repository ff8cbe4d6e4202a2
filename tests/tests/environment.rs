//! A test environment that is missing or down fails loudly, naming the command that
//! brings it up, instead of letting end-to-end tests pass without running.

use cutover_tests::{Engine, ScratchDatabase, TestEnv, UP_HINT, free_port};

#[test]
fn a_missing_env_file_names_scripts_testenv_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("env");
    let message = TestEnv::load_from(&path).unwrap_err().to_string();
    assert!(message.contains("scripts/testenv up"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[test]
#[should_panic(expected = "scripts/testenv up")]
fn a_missing_key_panics_naming_scripts_testenv_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("env");
    std::fs::write(&path, "CUTOVER_TEST_REGISTRY=127.0.0.1:5000\n").unwrap();
    let env = TestEnv::load_from(&path).unwrap();
    assert_eq!(env.registry(), "127.0.0.1:5000");
    env.postgres_url();
}

#[test]
fn a_malformed_line_is_reported_with_its_number() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("env");
    std::fs::write(&path, "# written by scripts/testenv\nA=1\n\nnot a pair\n").unwrap();
    let message = TestEnv::load_from(&path).unwrap_err().to_string();
    assert!(message.contains(":4 "), "{message}");
    assert!(message.contains(UP_HINT), "{message}");
}

#[tokio::test]
#[should_panic(expected = "scripts/testenv up")]
async fn a_database_server_that_does_not_answer_names_scripts_testenv_up() {
    // Nothing listens on a port the kernel just handed out and released.
    let url = format!("postgres://nobody:nothing@127.0.0.1:{}", free_port());
    ScratchDatabase::create_on(Engine::Postgres, &url).await;
}

#[test]
fn the_real_env_file_describes_every_service() {
    let env = TestEnv::get();
    for key in [
        "CUTOVER_TEST_REGISTRY",
        "CUTOVER_TEST_SPECIMEN_IMAGE",
        "CUTOVER_TEST_SPECIMEN_VERSIONS",
        "CUTOVER_TEST_SPECIMEN_BIN",
        "CUTOVER_TEST_PG_URL",
        "CUTOVER_TEST_MYSQL_URL",
        "CUTOVER_TEST_DOCKER_HOST",
    ] {
        assert!(
            !env.require(key).is_empty(),
            "{key} is empty in {}",
            env.path().display()
        );
    }
    assert!(
        env.specimen_bin().is_file(),
        "{} is not a file",
        env.specimen_bin().display()
    );
    for version in ["1.0.0", "1.1.0", "1.2.0", "1.1.0-broken", "1.1.0-unhealthy"] {
        assert!(
            env.specimen_versions().contains(&version),
            "no specimen {version}"
        );
    }
}
