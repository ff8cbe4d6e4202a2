//! The specimen images in the local registry: stored files survive a container recreate
//! when the storage path is a volume, and each tag behaves as its version says, as seen
//! through Docker's own health status and exit codes.

use std::time::Duration;

use cutover_tests::{DockerVolume, Engine, ScratchDatabase, SpecimenContainer};

const START: Duration = Duration::from_secs(60);

async fn stored_files_survive_a_container_recreate(engine: Engine) {
    let db = ScratchDatabase::create(engine).await;
    let volume = DockerVolume::create();
    let upload: Vec<u8> = (0..65_536u32).map(|i| (i % 251) as u8).collect();

    let first = SpecimenContainer::run("1.0.0", &db, Some(&volume), &[]);
    first.wait_health("healthy", START).await;
    first.client().put_file("upload.bin", upload.clone()).await;
    first
        .client()
        .create_item("with attachment", "upload.bin")
        .await;
    let items = first.client().items().await;
    first.remove();

    let second = SpecimenContainer::run("1.1.0", &db, Some(&volume), &[]);
    second.wait_health("healthy", START).await;
    assert_eq!(second.client().get_file("upload.bin").await, Some(upload));
    assert_eq!(second.client().items().await, items);
    second.remove();

    // Without the volume the file is gone: the volume, not the image, kept it.
    let bare = SpecimenContainer::run("1.1.0", &db, None, &[]);
    bare.wait_health("healthy", START).await;
    assert_eq!(bare.client().get_file("upload.bin").await, None);
}

#[tokio::test]
async fn stored_files_survive_a_container_recreate_on_postgres() {
    stored_files_survive_a_container_recreate(Engine::Postgres).await;
}

#[tokio::test]
async fn stored_files_survive_a_container_recreate_on_mariadb() {
    stored_files_survive_a_container_recreate(Engine::MariaDb).await;
}

#[tokio::test]
async fn each_image_behaves_as_its_tag_says() {
    let db = ScratchDatabase::create(Engine::MariaDb).await;

    let unhealthy = SpecimenContainer::run("1.1.0-unhealthy", &db, None, &[]);
    unhealthy.wait_health("unhealthy", START).await;
    assert_eq!(unhealthy.client().health().await, Some(503));
    assert_eq!(
        unhealthy.client().version().await["version"],
        "1.1.0-unhealthy"
    );
    assert_eq!(
        db.applied_versions().await,
        ["1.0.0", "1.1.0"],
        "it migrated all the same"
    );
    unhealthy.remove();

    let broken = SpecimenContainer::run("1.2.0-broken", &db, None, &[]);
    assert_eq!(broken.wait_exit(START).await, 3, "{}", broken.logs());
    broken.remove();

    let current = SpecimenContainer::run("1.2.0", &db, None, &[]);
    current.wait_health("healthy", START).await;
    assert_eq!(current.client().version().await["version"], "1.2.0");
    let logs = current.logs();
    for event in [
        "event=starting",
        "event=migration_start",
        "event=migration_end",
        "event=serving",
    ] {
        assert!(logs.contains(event), "no {event} in:\n{logs}");
    }
    let password = db
        .app_env()
        .into_iter()
        .find_map(|(k, v)| (k == "MYSQL_PASSWORD").then_some(v))
        .expect("MariaDB is configured the vendor's way, with MYSQL_PASSWORD");
    assert!(!logs.contains(&password), "the password leaked:\n{logs}");
    assert!(
        logs.contains(":***@"),
        "the database shows, redacted:\n{logs}"
    );
}
