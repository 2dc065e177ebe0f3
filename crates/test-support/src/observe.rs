//! What tests read off a running [`TestGateway`] and wait for: requests in flight, the
//! event log's position.
use crate::{DEADLINE, TestGateway, eventually};

impl TestGateway {
    /// Requests the gateway counts in flight (tunnels and streams included) to the
    /// replicas of `services`.
    pub fn in_flight(&self, services: &[&str]) -> u64 {
        let gateway = self.shoal().gateway();
        services
            .iter()
            .filter_map(|s| gateway.traffic(s))
            .flat_map(|(_, replicas)| replicas.into_iter().map(|(_, t)| t.in_flight))
            .sum()
    }

    /// Wait until [`in_flight`](Self::in_flight) of `services` is `n`; panic with the last
    /// count after [`DEADLINE`].
    pub async fn wait_in_flight(&self, services: &[&str], n: u64) {
        eventually(DEADLINE, || async {
            match self.in_flight(services) {
                count if count == n => Ok(()),
                count => Err(format!(
                    "{count} requests in flight to {services:?}, not {n}"
                )),
            }
        })
        .await;
    }

    /// The sequence number of the latest event (0 before any): events after it are new.
    pub fn last_event_seq(&self) -> u64 {
        self.shoal().events().since(0).last().map_or(0, |e| e.seq)
    }
}
