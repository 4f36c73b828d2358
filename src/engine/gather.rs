//! Gathering a call's data: every prefetch key the candidate rules need
//! that the EHR did not send (missing, or an OperationOutcome) is fetched
//! from its FHIR server, with the remaining pages of paginated Bundles.

use super::{CallError, Engine};
use crate::cds::CdsRequest;
use crate::fhir::{
    Pages, PrefetchKey, PrefetchState, classify_prefetch, next_link, render_template,
};
use futures::future::join_all;

impl Engine {
    /// Fetches every key that prefetch lacks (missing, or an OperationOutcome)
    /// and the remaining pages of paginated prefetch Bundles.
    pub(super) async fn gather(
        &self,
        request: &CdsRequest<'_>,
        keys: &[PrefetchKey],
    ) -> Result<Vec<Pages>, CallError> {
        let token = request
            .fhir_authorization
            .as_ref()
            .map(|a| a.access_token.as_str());
        let mut jobs = Vec::new();
        for key in keys {
            let state = classify_prefetch(request.prefetch_entry(key.key));
            if self.counted {
                count_prefetch(key.key, &state);
            }
            match state {
                PrefetchState::NoData => {}
                PrefetchState::Provided(value) => {
                    if let Some(next) = next_link(value) {
                        let server = self.server(request, key, "is paginated")?;
                        jobs.push(Job::Pages {
                            server,
                            next,
                            key: key.key,
                        });
                    }
                }
                PrefetchState::Missing | PrefetchState::Failed => {
                    let Some(query) = render_template(&key.template, request.context()) else {
                        continue; // e.g. no encounterId: the key does not apply
                    };
                    let server = self.server(request, key, "is missing or failed")?;
                    jobs.push(Job::Query {
                        server,
                        query,
                        key: key.key,
                    });
                }
            }
        }
        let results = join_all(jobs.into_iter().map(|job| self.run(job, token))).await;
        results.into_iter().collect()
    }

    fn server<'r>(
        &self,
        request: &'r CdsRequest<'_>,
        key: &PrefetchKey,
        why: &str,
    ) -> Result<&'r str, CallError> {
        request.fhir_server.as_deref().ok_or_else(|| {
            CallError::PreconditionFailed(format!(
                "prefetch key {:?} ({}) {why}, and the request has no fhirServer to fetch it from",
                key.key, key.template
            ))
        })
    }

    async fn run(&self, job: Job<'_>, token: Option<&str>) -> Result<Pages, CallError> {
        let (key, result) = match job {
            Job::Query { server, query, key } => {
                let result = self.fhir.fetch(server, &query, token).await;
                if result.is_ok() && self.counted {
                    crate::metrics::prefetch_fetched(key);
                }
                (key, result)
            }
            Job::Pages { server, next, key } => (key, self.fhir.fetch(server, &next, token).await),
        };
        result.map_err(|e| {
            tracing::info!(key, error = %e, "FHIR fetch failed");
            CallError::PreconditionFailed(format!("could not fetch prefetch key {key:?}: {e}"))
        })
    }
}

/// Counts a needed prefetch key as served (a value or `null`) or missing.
fn count_prefetch(key: &'static str, state: &PrefetchState<'_>) {
    match state {
        PrefetchState::Provided(_) | PrefetchState::NoData => crate::metrics::prefetch_served(key),
        PrefetchState::Missing | PrefetchState::Failed => crate::metrics::prefetch_missing(key),
    }
}

enum Job<'r> {
    Query {
        server: &'r str,
        query: String,
        key: &'static str,
    },
    Pages {
        server: &'r str,
        next: String,
        key: &'static str,
    },
}
