//! Turns at the query connections, shared fairly among clients.
//!
//! A query route's request takes a turn before its connection, and gives it back with the
//! connection. There are as many turns as query connections, so while they last nobody waits
//! here: one client alone may use every connection. Once all are taken, a turn given back goes
//! to the waiting client (one bearer token, or without one one address: [`Holder`]) that holds the
//! fewest, the longest waiting of those first, rather than to whoever came first: a client
//! sending many slow queries then delays another's by one query at most, instead of by all of
//! its own queued before it. A request that gets no turn within [`ACQUIRE_TIMEOUT`](crate::store::ACQUIRE_TIMEOUT) is answered
//! as one that got no connection (`503`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use super::unsent::Holder;

/// The turns, who holds them, and who waits for one.
pub struct Turns {
    ledger: Mutex<Ledger>,
    /// How long a request waits for a turn at most.
    wait: Duration,
}

struct Ledger {
    capacity: usize,
    taken: usize,
    held: HashMap<Holder, usize>,
    /// The requests waiting, in the order they came.
    waiting: BTreeMap<u64, (Holder, oneshot::Sender<()>)>,
    next: u64,
}

impl Ledger {
    fn hold(&mut self, holder: Holder) {
        *self.held.entry(holder).or_default() += 1;
    }

    /// A turn of `holder`'s given back: to the waiting request whose client holds the fewest,
    /// else to nobody.
    fn give_back(&mut self, holder: Holder) {
        if let Some(held) = self.held.get_mut(&holder) {
            *held -= 1;
            if *held == 0 {
                self.held.remove(&holder);
            }
        }
        let held = |h: &Holder| self.held.get(h).copied().unwrap_or(0);
        let next = (self.waiting.iter())
            .min_by_key(|(seq, (waiter, _))| (held(waiter), **seq))
            .map(|(seq, _)| *seq);
        match next.and_then(|seq| self.waiting.remove(&seq)) {
            Some((waiter, tell)) => {
                self.hold(waiter);
                // Its request stopped waiting only under this lock, after taking itself off.
                let _ = tell.send(());
            }
            None => self.taken -= 1,
        }
    }
}

impl Turns {
    /// `capacity` turns, each waited for at most `wait` (the connections'
    /// [`ACQUIRE_TIMEOUT`](crate::store::ACQUIRE_TIMEOUT)).
    pub fn new(capacity: usize, wait: Duration) -> Turns {
        Turns {
            wait,
            ledger: Mutex::new(Ledger {
                capacity: capacity.max(1),
                taken: 0,
                held: HashMap::new(),
                waiting: BTreeMap::new(),
                next: 0,
            }),
        }
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A turn for `holder`, at once while any is free, else when one is given to it; no turn
    /// within the wait is [`sqlx::Error::PoolTimedOut`].
    pub async fn take(self: &Arc<Self>, holder: Holder) -> Result<Turn, sqlx::Error> {
        let given = {
            let mut ledger = self.ledger();
            if ledger.taken < ledger.capacity {
                ledger.taken += 1;
                ledger.hold(holder);
                return Ok(self.turn(holder));
            }
            let (tell, given) = oneshot::channel();
            ledger.next += 1;
            let seq = ledger.next;
            ledger.waiting.insert(seq, (holder, tell));
            Waiting {
                turns: self.clone(),
                seq,
                holder,
                given,
            }
        };
        given.wait().await?;
        Ok(self.turn(holder))
    }

    fn turn(self: &Arc<Self>, holder: Holder) -> Turn {
        Turn {
            turns: self.clone(),
            holder,
        }
    }
}

/// A request waiting for a turn; one that stops waiting takes itself off the list, and gives
/// back a turn given to it meanwhile.
struct Waiting {
    turns: Arc<Turns>,
    seq: u64,
    holder: Holder,
    given: oneshot::Receiver<()>,
}

impl Waiting {
    async fn wait(mut self) -> Result<(), sqlx::Error> {
        match tokio::time::timeout(self.turns.wait, &mut self.given).await {
            Ok(Ok(())) => {
                self.seq = 0; // taken: nothing to undo
                Ok(())
            }
            _ => Err(sqlx::Error::PoolTimedOut),
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.seq == 0 {
            return;
        }
        let mut ledger = self.turns.ledger();
        if ledger.waiting.remove(&self.seq).is_none() && self.given.try_recv().is_ok() {
            ledger.give_back(self.holder); // given as it stopped waiting
        }
    }
}

/// A turn taken, given back when dropped.
pub struct Turn {
    turns: Arc<Turns>,
    holder: Holder,
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.turns.ledger().give_back(self.holder);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(n: u8) -> Holder {
        Holder::Address(std::net::IpAddr::from([127, 0, 0, n]))
    }

    /// A turn given back goes to the waiting client holding the fewest, not to the first come:
    /// one client's queued requests do not keep another's waiting behind all of them.
    #[tokio::test]
    async fn a_turn_given_back_goes_to_the_client_holding_the_fewest() {
        let turns = Arc::new(Turns::new(2, Duration::from_secs(10)));
        let (a, b) = (holder(1), holder(2));
        let first = turns.take(a).await.unwrap();
        let _second = turns.take(a).await.unwrap();
        let queued_a = tokio::spawn({
            let turns = turns.clone();
            async move { turns.take(a).await.map(|_| "a") }
        });
        tokio::task::yield_now().await;
        let queued_b = tokio::spawn({
            let turns = turns.clone();
            async move { turns.take(b).await.map(|turn| ("b", turn)) }
        });
        while turns.ledger().waiting.len() < 2 {
            tokio::task::yield_now().await;
        }
        drop(first);
        let (who, turn_b) = queued_b.await.unwrap().unwrap();
        assert_eq!(who, "b");
        assert!(!queued_a.is_finished(), "a waits for the next turn");
        drop(turn_b);
        assert_eq!(queued_a.await.unwrap().unwrap(), "a");
        let ledger = turns.ledger();
        assert_eq!((ledger.taken, ledger.waiting.len()), (1, 0));
    }

    /// One that waits in vain is answered as a request that got no connection, and leaves no
    /// trace: the turns all come back.
    #[tokio::test]
    async fn a_request_that_waits_in_vain_leaves_the_turns_as_they_were() {
        let turns = Arc::new(Turns::new(1, Duration::from_millis(50)));
        let held = turns.take(holder(1)).await.unwrap();
        let late = turns.take(holder(2)).await;
        assert!(matches!(late, Err(sqlx::Error::PoolTimedOut)));
        drop(held);
        let ledger = turns.ledger();
        assert_eq!((ledger.taken, ledger.waiting.len()), (0, 0));
        assert!(ledger.held.is_empty());
    }
}
