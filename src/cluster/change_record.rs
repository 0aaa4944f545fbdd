//! The node driver's half of being told of AWS changes (docs/events.md):
//! a watch of the one ConfigMap the controller records changes in, by its
//! name (the driver may read that object and no other ConfigMap). Each
//! version read says what changed since the previous one.

use aws_secrets_csi_core::change_log::{ChangeLog, DATA_KEY, News, Seen};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};

/// The news of each new version of the record `namespace`/`name`. What was
/// recorded before the watch first listed is not news (the volumes fetched
/// it when they were published); a record first made after that is.
pub fn watch(
    client: kube::Client,
    namespace: &str,
    name: &str,
) -> impl Stream<Item = News> + Send + 'static {
    let api: Api<ConfigMap> = Api::namespaced(client, namespace);
    let name = name.to_owned();
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut seen: Option<Seen> = None;
    let mut listed_any = false;
    watcher(api, config)
        .default_backoff()
        .filter_map(move |event| {
            let news = match event {
                Ok(watcher::Event::Init) => {
                    listed_any = false;
                    None
                }
                Ok(watcher::Event::InitApply(cm)) | Ok(watcher::Event::Apply(cm)) => {
                    listed_any = true;
                    match read(&cm) {
                        Some(log) => {
                            let news = log.since(seen.as_ref());
                            seen = Some(log.seen());
                            Some(news)
                        }
                        None => None,
                    }
                }
                Ok(watcher::Event::InitDone) => {
                    if !listed_any && seen.is_none() {
                        seen = Some(Seen::no_record());
                    }
                    None
                }
                Ok(watcher::Event::Delete(_)) => {
                    seen = Some(Seen::no_record());
                    None
                }
                Err(e) => {
                    tracing::warn!(configmap = %name, error = %e, "cannot watch the change record; volumes refresh at their interval meanwhile");
                    None
                }
            };
            futures::future::ready(news.filter(|n| n.gap || !n.changes.is_empty()))
        })
}

fn read(cm: &ConfigMap) -> Option<ChangeLog> {
    let text = cm.data.as_ref()?.get(DATA_KEY)?;
    match ChangeLog::decode(text) {
        Ok(log) => Some(log),
        Err(e) => {
            tracing::warn!(configmap = ?cm.metadata.name, error = %e, "the change record is unreadable; waiting for its next version");
            None
        }
    }
}
