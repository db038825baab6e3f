//! Unit tests of upload admission: budgets, shares, waiting, refusal codes, the gauge.

use super::*;
use prometheus::Opts;

const MIB: u64 = 1 << 20;

fn limits(memory_mib: u64, partner_mib: u64, max_uploads: usize, wait_ms: u64) -> AdmissionLimits {
    AdmissionLimits {
        memory: memory_mib * MIB,
        partner_memory: partner_mib * MIB,
        max_uploads,
        wait: Duration::from_millis(wait_ms),
        part_size: 8 * MIB,
        upload_concurrency: 2,
    }
}

fn admission(l: AdmissionLimits) -> Admission {
    let metrics = AdmissionMetrics {
        reserved: IntGauge::new("reserved", "r").unwrap(),
        refused: IntCounterVec::new(Opts::new("refused", "r"), &["reason"]).unwrap(),
    };
    Admission::new(l, metrics)
}

fn refused(a: &Admission, reason: &str) -> u64 {
    a.0.metrics.refused.with_label_values(&[reason]).get()
}

#[test]
fn footprint_is_the_object_or_the_parts_in_memory() {
    let l = limits(96, 48, 64, 0);
    assert_eq!(l.footprint(Some(64 * 1024)), 64 * 1024 + UPLOAD_OVERHEAD);
    assert_eq!(l.footprint(Some(8 * MIB)), 8 * MIB + UPLOAD_OVERHEAD);
    assert_eq!(l.footprint(Some(8 * MIB + 1)), 24 * MIB + UPLOAD_OVERHEAD);
    assert_eq!(l.footprint(None), 24 * MIB + UPLOAD_OVERHEAD);
    assert_eq!(l.largest_footprint(), l.footprint(Some(u64::MAX)));
}

#[tokio::test]
async fn past_the_service_budget_is_503_and_room_comes_back() {
    let a = admission(limits(60, 60, 64, 30));
    let t1 = a.admit("p1", None).await.unwrap();
    let t2 = a.admit("p2", None).await.unwrap();
    assert_eq!(
        a.0.metrics.reserved.get() as u64,
        2 * (24 * MIB + UPLOAD_OVERHEAD)
    );
    let err = a.admit("p3", None).await.unwrap_err();
    assert!(matches!(err, ApiError::UploadsBusy), "{err:?}");
    assert_eq!(refused(&a, "service_memory"), 1);
    // Small uploads still fit beside them.
    let small = a.admit("p3", Some(1024)).await.unwrap();
    drop((t1, small));
    let t3 = a.admit("p3", None).await.unwrap();
    drop((t2, t3));
    assert_eq!(a.0.metrics.reserved.get(), 0);
    assert_eq!(a.0.memory.available_permits(), 60 * 1024);
}

#[tokio::test]
async fn one_partner_over_its_share_is_429_and_others_go_on() {
    let a = admission(limits(200, 50, 64, 20));
    let _t1 = a.admit("greedy", None).await.unwrap();
    let _t2 = a.admit("greedy", None).await.unwrap();
    let err = a.admit("greedy", None).await.unwrap_err();
    assert!(matches!(err, ApiError::PartnerUploadLimit), "{err:?}");
    assert_eq!(refused(&a, "partner_memory"), 1);
    let _other = a.admit("modest", None).await.unwrap();
    // The refused request took nothing from the service budget.
    assert_eq!(
        a.0.memory.available_permits() as u64,
        (200 * MIB - 3 * (24 * MIB + UPLOAD_OVERHEAD)) / 1024
    );
}

#[tokio::test]
async fn past_the_upload_count_is_503() {
    let a = admission(limits(1000, 1000, 2, 10));
    let _t1 = a.admit("p", Some(10)).await.unwrap();
    let _t2 = a.admit("p", Some(10)).await.unwrap();
    assert!(matches!(
        a.admit("p", Some(10)).await.unwrap_err(),
        ApiError::UploadsBusy
    ));
    assert_eq!(refused(&a, "service_uploads"), 1);
}

#[tokio::test]
async fn a_waiting_upload_is_admitted_when_room_frees() {
    let a = admission(limits(30, 30, 64, 5_000));
    let t1 = a.admit("p", None).await.unwrap();
    let waiter = {
        let a = a.clone();
        tokio::spawn(async move { a.admit("p", None).await.map(|_| ()) })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished(), "admitted without room");
    drop(t1);
    let got = tokio::time::timeout(Duration::from_secs(2), waiter).await;
    assert!(matches!(got, Ok(Ok(Ok(())))), "{got:?}");
}

#[tokio::test]
async fn waits_are_first_come_first_served() {
    // A large upload waiting at the head is not overtaken by small ones that would fit.
    let a = admission(limits(30, 30, 64, 5_000));
    let t1 = a.admit("p", None).await.unwrap();
    let big = {
        let a = a.clone();
        tokio::spawn(async move { a.admit("p", None).await.map(|_| ()) })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let small = {
        let a = a.clone();
        tokio::spawn(async move { a.admit("p", Some(1024)).await.map(|_| ()) })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        !small.is_finished(),
        "a small upload overtook the waiting large one"
    );
    drop(t1);
    assert!(matches!(big.await, Ok(Ok(()))));
    assert!(matches!(small.await, Ok(Ok(()))));
}
