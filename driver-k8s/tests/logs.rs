//! `Driver::logs` against the emulator: a specimen pod's output through `pods/{name}/log`
//! with `tailLines`, and never a pod outside the workload.

mod common;

use common::Cluster;
use cutover_core::{Driver, ErrorKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_return_what_the_pod_printed_and_only_for_the_workload_s_pods() {
    let c = Cluster::start("1.0.0", 2, &[]).await;
    let o = c.driver.observe().await.unwrap();
    let pod = &o.instances[0].id;
    let text = c.driver.logs(pod, 200).await.expect("logs of a pod");
    assert!(
        text.contains("event=starting") && text.contains("event=serving"),
        "{text}"
    );
    assert!(text.contains("version=1.0.0"), "{text}");
    let printed = c.emulator.pod_log(pod);
    assert!(
        printed.ends_with(&text),
        "the tail of what the process printed"
    );

    let last = c.driver.logs(pod, 1).await.unwrap();
    assert_eq!(last.lines().count(), 1, "{last:?}");
    assert_eq!(last.trim_end(), printed.trim_end().lines().last().unwrap());

    // The toolbox pod exists in the namespace, but is not one of the workload's.
    let e = c
        .driver
        .logs("toolbox", 10)
        .await
        .expect_err("not an instance");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{}", e.report());
}
