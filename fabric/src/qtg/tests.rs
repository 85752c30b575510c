use super::*;

fn example(name: &str) -> Topology {
    let path = format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    Topology::from_toml_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn one_qtg_class_answers_its_qtg_for_any_input() {
    let topo = example("direct.toml");
    let policy = QtgPolicy::new(&topo);
    assert_eq!(policy.classes.len(), 1);
    assert_eq!(policy.classes[0].qtg, 0);
    let total = path_performance(&topo, 0).unwrap().total;
    assert_eq!(policy.classes[0].min_ps, total.read_latency_ps);
    assert!(policy.limits().is_empty());
    assert_eq!(qtg_class_of(&policy.classes, 133_000), 0);
    assert_eq!(policy.fixed_qtg(), Some(0));
    assert_eq!(policy.answer(0), [0]);
}

#[test]
fn several_qtg_classes_split_on_read_latency() {
    // hb0's device sits right below its root port; hb1's behind a switch
    // with slow media: two latency classes, QTG 3 and QTG 1.
    let topo = Topology::from_toml_str(
        r#"
        [[host_bridge]]
        id = "hb0"
        [[host_bridge]]
        id = "hb1"
        [[switch]]
        id = "sw0"
        port = "hb1.rp0"
        downstream_ports = 1
        [[type3]]
        id = "fast"
        port = "hb0.rp0"
        volatile = "256M"
        [[type3]]
        id = "slow"
        port = "sw0.dp0"
        volatile = "256M"
        media = { read_latency_ns = 400 }
        [[window]]
        id = "near"
        targets = ["hb0"]
        size = "256M"
        qtg = 3
        [[window]]
        id = "far"
        targets = ["hb1"]
        size = "256M"
        qtg = 1
        "#,
    )
    .unwrap();
    let policy = QtgPolicy::new(&topo);
    let ps = |d| path_performance(&topo, d).unwrap().total.read_latency_ps;
    let (fast, slow) = (ps(0), ps(1));
    assert!(fast < slow);
    assert_eq!(
        policy.classes,
        vec![
            QtgClass {
                qtg: 3,
                min_ps: fast,
                max_ps: fast
            },
            QtgClass {
                qtg: 1,
                min_ps: slow,
                max_ps: slow
            },
        ]
    );
    assert_eq!(policy.limits(), vec![(fast + slow) / 2]);
    assert_eq!(policy.fixed_qtg(), None);
    assert_eq!(policy.max_qtg(), 3);
    assert_eq!(policy.answer(3), [3, 1]);
    assert_eq!(policy.answer(1), [1, 3]);
    // Either unit, and estimates off the model by a fair margin (Linux's
    // link terms are its own), land in the right class.
    for (latency_ps, qtg) in [(fast, 3), (fast * 4 / 5, 3), (slow, 1), (slow * 9 / 10, 1)] {
        assert_eq!(policy.qtg_for(latency_ps), qtg, "{latency_ps} ps");
        assert_eq!(
            policy.qtg_for(latency_ps / 1000),
            qtg,
            "{latency_ps} ps in ns"
        );
    }
    let ns_limit = policy.ns_limit();
    assert!(
        ns_limit > slow / 1000 * 2 && ns_limit < fast / 2,
        "{ns_limit}"
    );
}

#[test]
fn windows_without_devices_still_name_their_qtgs() {
    let topo = Topology::from_toml_str(
        "[[host_bridge]]\nid='h'\n[[window]]\ntargets=['h']\nsize='256M'\nqtg=5\n[[window]]\ntargets=['h']\nsize='256M'\nqtg=2\n",
    )
    .unwrap();
    let policy = QtgPolicy::new(&topo);
    assert!(policy.classes.is_empty());
    assert_eq!(policy.qtgs, [2, 5]);
    assert_eq!(policy.fixed_qtg(), Some(2));
    assert_eq!(policy.answer(2), [2, 5]);
}
