//! Places for the requests that hold a connection for long: open streams, and long polls while
//! they wait, hold a client connection ([`crate::server::long_lived_places`] of them, so that
//! the connections left stay for deliveries); whole workspace statuses hold a query connection
//! while their clients read them (half of the query connections, so that the other half stay for
//! other queries). Each kind has its own [`Places`].
//!
//! One client (one bearer token, or without one one address: [`Holder`]) may take every place
//! while nobody else wants one, but not keep the others out: when all are taken, a client
//! holding fewer than a quarter of them is given the oldest place of the client holding the most
//! beyond it. That place's stream ends (its client resumes with `Last-Event-ID`, and is refused
//! while it holds its share and the places are taken) and its long poll answers at once, as at
//! the end of its wait: nothing is lost either way.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::unsent::Holder;
use crate::error::Error;
use crate::server::ConnectionCloser;

/// The places, and who holds each.
pub struct Places {
    ledger: Mutex<Ledger>,
    /// The `503`'s detail when no place can be had.
    full: &'static str,
}

struct Ledger {
    capacity: usize,
    next_id: u64,
    /// Each holder's places, oldest first: how to tell one to give itself up.
    by_holder: HashMap<Holder, BTreeMap<u64, GiveUp>>,
}

/// Tells a place's request to end, and closes the connection of one that may not hear it soon.
struct GiveUp {
    tell: watch::Sender<bool>,
    close: Option<ConnectionCloser>,
}

impl Places {
    /// `capacity` places; `full` says why there is none (the detail of the `503`).
    pub fn new(capacity: usize, full: &'static str) -> Places {
        Places {
            ledger: Mutex::new(Ledger {
                capacity,
                next_id: 0,
                by_holder: HashMap::new(),
            }),
            full,
        }
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lowers the number of places to `capacity` (the connection cap was lowered to fit the
    /// open-file limit); places already taken are kept until they are given back.
    pub fn lower_to(&self, capacity: usize) {
        let mut ledger = self.ledger();
        ledger.capacity = ledger.capacity.min(capacity);
    }

    /// A place for `holder`, held until the [`Place`] is dropped (or given up: see the module);
    /// a `503` when all are taken by clients that hold no more than their share, or by
    /// `holder` itself beyond it.
    ///
    /// `close` is the connection of a request that may not end soon when told to (a stream,
    /// which ends when it is next asked for bytes): it is closed when the place is given up,
    /// since the place counts as free at once.
    pub fn take(
        self: &Arc<Self>,
        holder: Holder,
        close: Option<ConnectionCloser>,
    ) -> Result<Place, Error> {
        let mut ledger = self.ledger();
        let taken: usize = ledger.by_holder.values().map(BTreeMap::len).sum();
        if taken >= ledger.capacity {
            // What a client may count on whoever else wants places: a quarter of them.
            let share = (ledger.capacity / 4).max(1);
            let mine = ledger.by_holder.get(&holder).map_or(0, BTreeMap::len);
            let most = (ledger.by_holder.iter())
                .filter(|(_, places)| places.len() > share)
                .max_by_key(|(_, places)| places.len())
                .map(|(other, _)| *other);
            match most {
                Some(other) if mine < share => {
                    let places = ledger.by_holder.get_mut(&other).expect("found above");
                    let (_, give_up) = places.pop_first().expect("holds more than its share");
                    if places.is_empty() {
                        ledger.by_holder.remove(&other);
                    }
                    give_up.tell.send_replace(true);
                    if let Some(close) = give_up.close {
                        close.close();
                    }
                    tracing::debug!(
                        "all places are taken: the oldest of the client holding the most was \
                         given to another client"
                    );
                }
                _ => return Err(Error::unavailable(self.full)),
            }
        }
        ledger.next_id += 1;
        let id = ledger.next_id;
        let (tell, given_up) = watch::channel(false);
        (ledger.by_holder.entry(holder).or_default()).insert(id, GiveUp { tell, close });
        Ok(Place {
            places: self.clone(),
            holder,
            id,
            given_up,
        })
    }
}

/// A place taken, given back when dropped.
pub struct Place {
    places: Arc<Places>,
    holder: Holder,
    id: u64,
    given_up: watch::Receiver<bool>,
}

impl Place {
    /// Resolves once the place was given to another client: the stream or long poll holding it
    /// is to end.
    pub fn given_up(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut given_up = self.given_up.clone();
        async move {
            if given_up.wait_for(|given| *given).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut ledger = self.places.ledger();
        let Some(places) = ledger.by_holder.get_mut(&self.holder) else {
            return; // given up: taken by its new holder already
        };
        places.remove(&self.id);
        if places.is_empty() {
            ledger.by_holder.remove(&self.holder);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/SECURITY.md: once all places are taken, a client holding fewer than a quarter of them
    /// is given one; at its quarter it is refused. Of 12 places, a quarter is 3.
    #[test]
    fn a_newcomer_is_given_places_up_to_a_quarter_of_them() {
        let places = Arc::new(Places::new(12, "full"));
        let (hog, newcomer) = (Holder::Token(1), Holder::Token(2));
        let _held: Vec<Place> = (0..12).map(|_| places.take(hog, None).unwrap()).collect();
        let _given: Vec<Place> = (0..3)
            .map(|_| places.take(newcomer, None).unwrap())
            .collect();
        assert!(places.take(newcomer, None).is_err(), "at its quarter");
    }
}
