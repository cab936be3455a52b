//! Consumer group membership against a real broker: two members split a topic's
//! partitions, commits are read back, and a member that leaves hands its partitions over.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::on_shard;
use kafka_wire::{Generation, GroupConfig, GroupMember, Heartbeat, NewTopic};
use sluice_tests::Broker;

fn group_config(group: &str) -> GroupConfig {
    GroupConfig {
        group_id: group.to_owned(),
        topics: vec!["grouped".to_owned()],
        session_timeout: Duration::from_secs(6),
        rebalance_timeout: Duration::from_secs(6),
    }
}

fn partitions(g: &Generation) -> Vec<i32> {
    g.assignment.get("grouped").cloned().unwrap_or_default()
}

/// Keeps `member` in the group: heartbeats and rejoins, recording each generation, until
/// `stop` is set.
async fn stay(
    mut member: GroupMember,
    seen: Rc<RefCell<Vec<Generation>>>,
    stop: Rc<RefCell<bool>>,
) {
    while !*stop.borrow() {
        let beat = member.heartbeat().await;
        if beat.expect("heartbeat") == Heartbeat::Rejoin {
            let g = member.join().await.expect("rejoin");
            seen.borrow_mut().push(g);
        }
        glommio::timer::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn members_split_partitions_commit_and_hand_over_on_leave() {
    let broker = Broker::start().expect("broker starts");
    let bootstrap = broker.bootstrap();
    on_shard(move || async move {
        let admin = common::client(&bootstrap).await;
        admin
            .create_topics(&[NewTopic::new("grouped", 4)])
            .await
            .expect("CreateTopics");

        // Alone, the first member gets everything, and commits.
        let mut a = GroupMember::new(common::client(&bootstrap).await, group_config("g1"));
        let first = a.join().await.expect("first join");
        assert!(first.leader);
        assert_eq!(partitions(&first), [0, 1, 2, 3]);
        a.commit(&[("grouped", 0, 5), ("grouped", 3, 9)])
            .await
            .expect("commit");
        let committed = a
            .committed("grouped", &[0, 1, 3])
            .await
            .expect("offset fetch");
        assert_eq!(committed, [(0, Some(5)), (1, None), (3, Some(9))]);

        // A second member joins while the first keeps heartbeating: they converge on one
        // generation that splits the partitions between them.
        let seen = Rc::new(RefCell::new(vec![first]));
        let stop = Rc::new(RefCell::new(false));
        glommio::spawn_local(stay(a, seen.clone(), stop.clone())).detach();
        let mut b = GroupMember::new(common::client(&bootstrap).await, group_config("g1"));
        let deadline = Instant::now() + Duration::from_secs(30);
        let (gb, ga) = loop {
            assert!(
                Instant::now() < deadline,
                "no common generation: {:?}",
                seen.borrow()
            );
            let gb = b.join().await.expect("second member joins");
            // Heartbeat like a real member until the first member's view matches ours.
            let mut matched = None;
            for _ in 0..30 {
                if let Some(ga) = seen.borrow().iter().find(|g| g.id == gb.id) {
                    matched = Some(ga.clone());
                    break;
                }
                glommio::timer::sleep(Duration::from_millis(100)).await;
                if b.heartbeat().await.expect("heartbeat") == Heartbeat::Rejoin {
                    break;
                }
            }
            if let Some(ga) = matched {
                break (gb, ga);
            }
        };
        let mut all = partitions(&ga);
        all.extend(partitions(&gb));
        all.sort();
        assert_eq!(all, [0, 1, 2, 3], "a: {ga:?}, b: {gb:?}");
        assert!(!partitions(&ga).is_empty() && !partitions(&gb).is_empty());
        // The second member reads the first one's commits.
        let committed = b.committed("grouped", &[0, 3]).await.expect("offset fetch");
        assert_eq!(committed, [(0, Some(5)), (3, Some(9))]);

        // The second leaves: the first is told to rejoin and gets everything back.
        let generations = seen.borrow().len();
        b.leave().await.expect("LeaveGroup");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let last = seen.borrow().last().cloned().expect("generations");
            if seen.borrow().len() > generations && partitions(&last) == [0, 1, 2, 3] {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "partitions not handed back: {:?}",
                seen.borrow()
            );
            glommio::timer::sleep(Duration::from_millis(50)).await;
        }
        *stop.borrow_mut() = true;
    });
}
