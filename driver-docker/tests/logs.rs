//! `Driver::logs` on the real engine: the last lines a specimen container printed, also
//! once it has exited, and never another container's.

mod common;

use std::time::{Duration, Instant};

use common::Deployment;
use cutover_core::{Driver, ErrorKind};
use cutover_tests::docker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_read_the_tail_of_an_instance_even_after_it_exited() {
    let d = Deployment::start_without_database("1.0.0", 1).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = d.driver.logs(&d.base, 200).await.expect("logs");
        if text.contains("event=starting") {
            break text;
        }
        assert!(Instant::now() < deadline, "no start-up line: {text:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(text.contains("version=1.0.0"), "{text}");
    // What `docker logs --tail 1` gives, byte for byte.
    assert_eq!(
        d.driver.logs(&d.base, 1).await.unwrap().trim_end(),
        docker(&["logs", "--tail", "1", &d.base]).trim_end()
    );

    // Exited (as a failed leader is when the engine reads it): still readable.
    docker(&["stop", "-t", "1", &d.base]);
    let after = d
        .driver
        .logs(&d.base, 200)
        .await
        .expect("logs of an exited instance");
    assert!(after.contains("event=starting"), "{after}");

    // The toolbox beside it is a container of the engine but not an instance.
    let e = d
        .driver
        .logs(&d.toolbox, 10)
        .await
        .expect_err("not an instance");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{}", e.report());
}
