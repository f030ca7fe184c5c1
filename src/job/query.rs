//! State queries of a running aligned job ([`super::Job::serve_state`]):
//! `GET /state/<processor>/<key>` on the admin server, answered by the
//! partition actor that owns the key, between two of its messages.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use ractor::rpc::CallResult;
use weir_actors::Processor;
use weir_actors::runtime::PartitionMsg;
use weir_state::KeyCodec;
use weir_state::value::decode_value;

use crate::partitioner::partition_of;
use crate::telemetry::{StateAnswer, StateQuery, Telemetry};

/// Parses a key from a URL path segment.
pub(crate) type ParseKey<K> = fn(&str) -> Result<K, String>;

/// Parses `s` as a `K`.
pub(crate) fn parse_key<K: std::str::FromStr>(s: &str) -> Result<K, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not a key of this processor"))
}

/// Answers queries through a job's partition actors.
struct Partitions<P: Processor> {
    name: String,
    actors: Vec<ActorRef<PartitionMsg<P::Key, P::In>>>,
    parse: ParseKey<P::Key>,
}

impl<P: Processor> StateQuery for Partitions<P> {
    fn processor(&self) -> &str {
        &self.name
    }

    fn get(&self, key: String) -> Pin<Box<dyn Future<Output = StateAnswer> + Send>> {
        let parsed = (self.parse)(&key);
        let actors = self.actors.clone();
        Box::pin(async move {
            let key = match parsed {
                Ok(key) => key,
                Err(why) => return StateAnswer::BadKey(why),
            };
            let mut encoded = Vec::new();
            key.encode_key(&mut encoded);
            let partition = partition_of(&encoded, actors.len() as u32);
            let asked = actors[partition as usize]
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
pub(super) struct Serving(Option<Telemetry>);

impl Serving {
    /// Starts answering queries for processor `name` through `actors`, if
    /// the job was asked to and reports to an admin server.
    pub(super) fn start<P: Processor>(
        query: Option<(String, ParseKey<P::Key>)>,
        telemetry: Option<&Telemetry>,
        actors: &[ActorRef<PartitionMsg<P::Key, P::In>>],
    ) -> Self {
        let (Some((name, parse)), Some(telemetry)) = (query, telemetry) else {
            return Self(None);
        };
        telemetry.serve_state(Some(Arc::new(Partitions::<P> {
            name,
            actors: actors.to_vec(),
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
