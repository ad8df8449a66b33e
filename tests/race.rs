//! Mutual exclusion under contention, over real sockets: many connections race for one
//! resource and exactly one wins, round after round; and on several workers a key is always
//! decided by its owning shard, whichever worker accepted the connection.

mod common;

use std::sync::{Arc, Barrier};

use common::*;

// 64 connections race for one resource; exactly one wins each round, and after the winner
// unlocks the next round again has exactly one winner.
#[test]
fn sixty_four_racers_one_winner() {
    for driver in DRIVERS {
        let server = start(&["--io-driver", driver, "--workers", "2"]);
        let addr = server.local_addr();
        const RACERS: usize = 64;
        const ROUNDS: usize = 20;
        let barrier = Arc::new(Barrier::new(RACERS));
        let threads: Vec<_> = (0..RACERS)
            .map(|i| {
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let mut c = Client::connect(addr);
                    let owner = format!("racer-{i}");
                    let mut wins = Vec::new();
                    for round in 0..ROUNDS {
                        let resource = format!("contended-{round}");
                        barrier.wait();
                        let r = c.lock("lockstore", &resource, &owner, 60);
                        assert_eq!(r.status, 200);
                        if r.body_str() == LOCKED {
                            wins.push(round);
                        } else {
                            assert_eq!(r.body_str(), NOT_LOCKED);
                        }
                    }
                    wins
                })
            })
            .collect();
        let mut winners = vec![0usize; ROUNDS];
        for t in threads {
            for round in t.join().expect("racer") {
                winners[round] += 1;
            }
        }
        assert!(
            winners.iter().all(|&w| w == 1),
            "winners per round: {winners:?}"
        );
    }
}

// With several workers, every connection (whichever worker accepted it) sees the same single
// holder of each key: a request decided by a shard that does not own the key would grant a
// second lease.
#[test]
fn keys_are_decided_by_their_owning_shard() {
    for driver in DRIVERS {
        let server = start(&["--io-driver", driver, "--workers", "3"]);
        let addr = server.local_addr();
        // Enough connections that the kernel spreads them over every worker.
        let mut clients: Vec<Client> = (0..24).map(|_| Client::connect(addr)).collect();
        for c in clients.iter_mut() {
            assert_eq!(c.get("/v1.0/healthz").status, 204);
        }
        let accepted = server.accepted_per_worker();
        assert!(
            accepted.iter().all(|&n| n > 0),
            "some worker accepted nothing: {accepted:?}"
        );
        let n = clients.len();
        for k in 0..60 {
            let resource = format!("key-{k}");
            let holder = k % n;
            assert_json(
                &clients[holder].lock("lockstore", &resource, "holder", 60),
                200,
                LOCKED,
            );
            for (i, c) in clients.iter_mut().enumerate() {
                if i == holder {
                    continue;
                }
                assert_json(
                    &c.lock("lockstore", &resource, &format!("o{i}"), 60),
                    200,
                    NOT_LOCKED,
                );
                assert_json(
                    &c.unlock("lockstore", &resource, "someone"),
                    200,
                    r#"{"status":2}"#,
                );
            }
            let releaser = (holder + 1) % n;
            assert_json(
                &clients[releaser].unlock("lockstore", &resource, "holder"),
                200,
                r#"{"status":0}"#,
            );
            assert_json(
                &clients[holder].unlock("lockstore", &resource, "holder"),
                200,
                r#"{"status":1}"#,
            );
        }
    }
}
