//! Retry delays.

use std::time::Duration;

use dragonfly_agent::backoff::{self, Backoff, Rng};

#[test]
fn delays_double_from_250_ms_up_to_5_s_with_jitter_inside_the_bounds() {
    for seed in 0..50 {
        let mut b = Backoff::standard(Rng::new(seed));
        let mut ceiling = Duration::from_millis(250);
        for _ in 0..12 {
            let d = b.next_delay();
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "{d:?} outside [{:?}, {ceiling:?}]",
                ceiling / 2
            );
            ceiling = (ceiling * 2).min(backoff::CAP);
        }
        assert_eq!(b.ceiling(), Duration::from_secs(5));
    }
}

#[test]
fn a_success_resets_the_delay() {
    let mut b = Backoff::standard(Rng::new(7));
    for _ in 0..6 {
        b.next_delay();
    }
    b.reset();
    assert!(b.next_delay() <= Duration::from_millis(250));
}

#[test]
fn jitter_differs_between_machines_and_slow_retries_stay_near_30_s() {
    let firsts: std::collections::BTreeSet<_> = (0..20)
        .map(|seed| Backoff::standard(Rng::new(seed)).next_delay())
        .collect();
    assert!(
        firsts.len() > 5,
        "machines booted together must not retry in lockstep"
    );
    let mut b = Backoff::standard(Rng::new(1));
    for _ in 0..100 {
        let d = b.jittered(backoff::SLOW);
        assert!(
            d >= Duration::from_secs(27) && d <= Duration::from_secs(33),
            "{d:?}"
        );
    }
}

#[test]
fn the_ceiling_never_overflows() {
    let mut b = Backoff::new(
        Duration::from_secs(1),
        Duration::from_secs(3600),
        Rng::new(3),
    );
    for _ in 0..200 {
        assert!(b.next_delay() <= Duration::from_secs(3600));
    }
}
