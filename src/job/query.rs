//! State queries of a running job ([`super::Job::serve_state`]):
//! `GET /state/<processor>/<key>` on the admin server, answered by the
//! partition actor that owns the key, between two of its messages. A key
//! whose partition this worker does not own (Kafka mode: another member of
//! the group has it) is answered 404 with its partition.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::ActorRef;
use ractor::rpc::CallResult;
use weir_actors::Processor;
use weir_actors::runtime::PartitionMsg;
use weir_state::KeyCodec;
use weir_state::value::decode_value;

use crate::lock;
use crate::partitioner::partition_of;
use crate::telemetry::{StateAnswer, StateQuery, Telemetry};

/// Parses a key from a URL path segment.
pub(crate) type ParseKey<K> = fn(&str) -> Result<K, String>;

/// Parses `s` as a `K`.
pub(crate) fn parse_key<K: std::str::FromStr>(s: &str) -> Result<K, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not a key of this processor"))
}

/// The partition actors a job runs now, by partition.
pub(crate) type Actors<K, V> = Arc<Mutex<BTreeMap<u32, ActorRef<PartitionMsg<K, V>>>>>;

/// The partition actors a job runs now, by partition, and how a key finds
/// its partition: shared with the run, which adds and removes actors as
/// partitions are assigned and released (Kafka mode); a file job's set is
/// fixed.
pub(crate) struct Owners<K, V> {
    pub(crate) actors: Actors<K, V>,
    /// The job's partition count (the input topic's in Kafka mode).
    pub(crate) partitions: u32,
    /// The partition of a key among `partitions`.
    pub(crate) route: fn(&K, u32) -> u32,
}

impl<K, V> Clone for Owners<K, V> {
    fn clone(&self) -> Self {
        Self {
            actors: Arc::clone(&self.actors),
            partitions: self.partitions,
            route: self.route,
        }
    }
}

impl<K: KeyCodec, V> Owners<K, V> {
    /// A file job's actors, keys routed as the feed routes them.
    pub(crate) fn fixed(actors: &[ActorRef<PartitionMsg<K, V>>]) -> Self {
        Self {
            actors: Arc::new(Mutex::new((0u32..).zip(actors.iter().cloned()).collect())),
            partitions: actors.len() as u32,
            route: |key, n| partition_of(&key.to_key_bytes(), n),
        }
    }
}

/// Answers queries through a job's partition actors.
struct Partitions<P: Processor> {
    name: String,
    owners: Owners<P::Key, P::In>,
    parse: ParseKey<P::Key>,
}

impl<P: Processor> StateQuery for Partitions<P> {
    fn processor(&self) -> &str {
        &self.name
    }

    fn get(&self, key: String) -> Pin<Box<dyn Future<Output = StateAnswer> + Send>> {
        let parsed = (self.parse)(&key);
        let owners = self.owners.clone();
        Box::pin(async move {
            let key = match parsed {
                Ok(key) => key,
                Err(why) => return StateAnswer::BadKey(why),
            };
            let partition = (owners.route)(&key, owners.partitions);
            let Some(actor) = lock(&owners.actors).get(&partition).cloned() else {
                return StateAnswer::NotOwned { partition };
            };
            let asked = actor
                .call(
                    |port| PartitionMsg::Query(key, port),
                    Some(Duration::from_secs(10)),
                )
                .await;
            let bytes = match asked {
                Ok(CallResult::Success(Ok(bytes))) => bytes,
                Ok(CallResult::Success(Err(why))) => return StateAnswer::Failed(why),
                Ok(other) => {
                    let why = format!("partition {partition} did not answer: {other:?}");
                    return StateAnswer::Failed(why);
                }
                // Released between the lookup and the call.
                Err(_) if !lock(&owners.actors).contains_key(&partition) => {
                    return StateAnswer::NotOwned { partition };
                }
                Err(e) => return StateAnswer::Failed(format!("partition {partition}: {e}")),
            };
            match decode_value::<P::State>(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|s| serde_json::to_value(&s).map_err(|e| e.to_string()))
            {
                Ok(state) => StateAnswer::State { partition, state },
                Err(why) => {
                    StateAnswer::Failed(format!("the state does not render as JSON: {why}"))
                }
            }
        })
    }
}

/// Serves state queries while it lives.
pub(crate) struct Serving(Option<Telemetry>);

impl Serving {
    /// Starts answering queries for processor `name` through `owners`, if
    /// the job was asked to and reports to an admin server.
    pub(crate) fn start<P: Processor>(
        query: Option<(String, ParseKey<P::Key>)>,
        telemetry: Option<&Telemetry>,
        owners: Owners<P::Key, P::In>,
    ) -> Self {
        let (Some((name, parse)), Some(telemetry)) = (query, telemetry) else {
            return Self(None);
        };
        telemetry.serve_state(Some(Arc::new(Partitions::<P> {
            name,
            owners,
            parse,
        })));
        Self(Some(telemetry.clone()))
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            t.serve_state(None);
        }
    }
}
