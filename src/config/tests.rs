use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn numbers_in_messages_are_written_without_float_formatting() {
    let cases = [
        (0.0, "0"),
        (8.0, "8"),
        (-3.0, "-3"),
        (0.85, "0.85"),
        (1.5, "1.5"),
        (0.0001, "0.000…"),
        (2.0f64.powi(60), "1152921504606846976"),
        (1e300, "≥ 2^63"),
        (f64::NAN, "NaN"),
        (f64::NEG_INFINITY, "-Infinity"),
    ];
    for (n, shown) in cases {
        assert_eq!(show_number(n), shown, "{n}");
    }
}

fn lanes(pairs: &[(&str, f64)]) -> Result<Config, Error> {
    let lanes = pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
    Config::from_input(ConfigInput {
        lanes: Some(lanes),
        ..ConfigInput::default()
    })
}

fn key_of(err: Error) -> String {
    match err {
        Error::InvalidConfig { key, .. } => key,
        other => panic!("not a config error: {other}"),
    }
}

#[test]
fn defaults_follow_the_design() {
    let c = Config::default();
    assert_eq!(c.lanes()["planner"], 2);
    assert_eq!(c.lanes()["worker"], 8);
    assert_eq!(c.lanes()["reviewer"], 4);
    assert_eq!(c.lanes()[OTHER_LANE], 4);
    assert_eq!(
        c.breaker,
        BreakerConfig {
            failure_threshold: 5,
            open_ms: 30_000,
            max_open_ms: 300_000,
            close_after: 2
        }
    );
    assert_eq!(c.pressure.refuse_at_per_mille, 800);
    assert_eq!(c.pressure.resume_below_per_mille, 750);
    assert_eq!(c.low_every, 8);
}

#[test]
fn user_lanes_merge_over_defaults() {
    let c = lanes(&[("worker", 16.0), ("scout", 3.0)]).unwrap();
    assert_eq!(c.lanes()["worker"], 16);
    assert_eq!(c.lanes()["scout"], 3);
    assert_eq!(c.lanes()["planner"], 2);
}

#[test]
fn bad_limits_name_their_key() {
    for bad in [0.0, -1.0, 2.5, f64::NAN, f64::INFINITY, 1025.0] {
        let err = lanes(&[("worker", bad)]).unwrap_err();
        assert_eq!(err.code(), "INVALID_CONFIG");
        assert_eq!(key_of(err), "lanes.worker");
    }
}

#[test]
fn bad_lane_names_are_refused() {
    for bad in ["", "has space", "é", &"x".repeat(129)] {
        assert_eq!(lanes(&[(bad, 1.0)]).unwrap_err().code(), "INVALID_CONFIG");
    }
}

#[test]
fn nested_settings_are_validated_with_their_path() {
    let input = |f: &dyn Fn(&mut ConfigInput)| {
        let mut i = ConfigInput::default();
        f(&mut i);
        Config::from_input(i)
    };
    let err = input(&|i| {
        i.breaker = Some(BreakerInput {
            open_ms: Some(0.0),
            ..Default::default()
        })
    });
    assert_eq!(key_of(err.unwrap_err()), "breaker.openMs");
    let err = input(&|i| {
        i.breaker = Some(BreakerInput {
            max_open_ms: Some(10.0),
            ..Default::default()
        })
    });
    assert_eq!(key_of(err.unwrap_err()), "breaker.maxOpenMs");
    let err = input(&|i| {
        i.pressure = Some(PressureInput {
            refuse_at: Some(1.5),
            ..Default::default()
        })
    });
    assert_eq!(key_of(err.unwrap_err()), "pressure.refuseAt");
    let err = input(&|i| {
        i.pressure = Some(PressureInput {
            resume_below: Some(0.9),
            ..Default::default()
        })
    });
    assert_eq!(key_of(err.unwrap_err()), "pressure.resumeBelow");
    let err = input(&|i| {
        i.fairness = Some(FairnessInput {
            low_every: Some(0.0),
        })
    });
    assert_eq!(key_of(err.unwrap_err()), "fairness.lowEvery");
    let ok = input(&|i| {
        i.pressure = Some(PressureInput {
            refuse_at: Some(0.9),
            resume_below: Some(0.85),
            stale_ms: Some(2000.0),
        });
        i.keys = Some([("openai/gpt-5".to_owned(), 3.0)].into());
    })
    .unwrap();
    assert_eq!(
        (
            ok.pressure.refuse_at_per_mille,
            ok.pressure.resume_below_per_mille
        ),
        (900, 850)
    );
    assert_eq!(ok.keys()["openai/gpt-5"], 3);
}

#[test]
fn unknown_agents_share_the_other_lane() {
    let c = Config::default();
    assert_eq!(c.lane_of("worker"), "worker");
    assert_eq!(c.lane_of("explorer"), OTHER_LANE);
}
