//! `scalelab report --kube`: the cluster's view while the staircase runs.
//! Every `--kube-interval` it reads, through the `kube` crate, the
//! HorizontalPodAutoscaler's current metrics and desired/current replicas
//! and the Deployment's ready replicas, next to the load offered then: the
//! timeline the page plots against the staircase.

use anyhow::{Context, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::{HorizontalPodAutoscaler, MetricStatus, MetricValueStatus};
use kube::{Api, Client};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One reading of the cluster.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Reading {
    /// Seconds since the staircase started.
    pub second: f64,
    /// The load offered then (0 between steps' ends and after the last).
    pub offered: f64,
    pub desired_replicas: Option<i32>,
    pub current_replicas: Option<i32>,
    pub ready_replicas: Option<i32>,
    /// The HPA's current metrics: a resource by name (its utilisation in
    /// percent, else its average value), an external or pods metric by its
    /// name (KEDA's `s0-prometheus`) with its average value.
    pub metrics: BTreeMap<String, f64>,
}

/// The objects the report follows.
pub struct Cluster {
    hpas: Api<HorizontalPodAutoscaler>,
    deployments: Api<Deployment>,
    hpa: String,
    deployment: String,
}

impl Cluster {
    /// Connects (kubeconfig, else the pod's service account) and reads
    /// both objects once, so a wrong name fails before the staircase.
    pub async fn connect(namespace: Option<&str>, hpa: &str, deployment: &str) -> Result<Cluster> {
        let config = kube::Config::infer().await.context("--kube: no Kubernetes configuration (kubeconfig or in-cluster)")?;
        let client = Client::try_from(config).context("--kube: creating the Kubernetes client")?;
        let namespace = namespace.map_or_else(|| client.default_namespace().to_string(), str::to_string);
        let cluster = Cluster {
            hpas: Api::namespaced(client.clone(), &namespace),
            deployments: Api::namespaced(client, &namespace),
            hpa: hpa.to_string(),
            deployment: deployment.to_string(),
        };
        cluster.hpas.get(hpa).await.with_context(|| format!("--kube: reading HorizontalPodAutoscaler {namespace}/{hpa}"))?;
        cluster
            .deployments
            .get(deployment)
            .await
            .with_context(|| format!("--kube: reading Deployment {namespace}/{deployment}"))?;
        tracing::info!(namespace, hpa, deployment, "recording the cluster's view");
        Ok(cluster)
    }

    async fn read(&self, second: f64, offered: f64) -> Result<Reading> {
        let hpa = self.hpas.get(&self.hpa).await?;
        let deployment = self.deployments.get(&self.deployment).await?;
        let status = hpa.status.unwrap_or_default();
        Ok(Reading {
            second,
            offered,
            desired_replicas: Some(status.desired_replicas),
            current_replicas: status.current_replicas,
            ready_replicas: deployment.status.and_then(|s| s.ready_replicas).or(Some(0)),
            metrics: status.current_metrics.unwrap_or_default().iter().filter_map(metric).collect(),
        })
    }

    /// Reads the cluster every `interval` until the returned recorder is stopped.
    pub fn record(self, interval: Duration, offered: watch::Receiver<f64>, started: Instant) -> Recorder {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut readings = Vec::new();
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.wait_for(|s| *s) => break,
                }
                let (second, now) = (started.elapsed().as_secs_f64(), *offered.borrow());
                match self.read(second, now).await {
                    Ok(reading) => readings.push(reading),
                    // A missed reading leaves a gap; the staircase goes on.
                    Err(e) => tracing::warn!(error = %format!("{e:#}"), "--kube: reading the cluster failed"),
                }
            }
            readings
        });
        Recorder { stop, task }
    }
}

/// The recording task.
pub struct Recorder {
    stop: watch::Sender<bool>,
    task: JoinHandle<Vec<Reading>>,
}

impl Recorder {
    /// Stops recording; the readings so far.
    pub async fn finish(self) -> Vec<Reading> {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

/// One current metric of an HPA, by name.
fn metric(status: &MetricStatus) -> Option<(String, f64)> {
    let (name, current) = if let Some(r) = &status.resource {
        (r.name.clone(), &r.current)
    } else if let Some(r) = &status.container_resource {
        (format!("{}/{}", r.container, r.name), &r.current)
    } else if let Some(e) = &status.external {
        (e.metric.name.clone(), &e.current)
    } else if let Some(p) = &status.pods {
        (p.metric.name.clone(), &p.current)
    } else if let Some(o) = &status.object {
        (o.metric.name.clone(), &o.current)
    } else {
        return None;
    };
    Some((name, value(current)?))
}

fn value(current: &MetricValueStatus) -> Option<f64> {
    if let Some(percent) = current.average_utilization {
        return Some(f64::from(percent));
    }
    let quantity = current.average_value.as_ref().or(current.value.as_ref())?;
    autoscale::quantity(&serde_json::Value::String(quantity.0.clone()))
}
