//! Counters, gauges and histograms that the hot paths (every request, every
//! session call and message) write from every worker thread, kept in one
//! part per thread and summed at a scrape.
//!
//! Prometheus' own types keep one set of atomics per series, and each write
//! is a locked instruction (a histogram's `observe` is four) on a line both
//! cores write. Here a series has a part for each of the first few slots
//! ([`thread_slot`]): the thread holding such a slot is the only writer of its
//! part, so it adds with a plain load and store; other threads (a later slot,
//! or none) share one more part, written with atomic adds. A scrape reads
//! every part as it is: a count it sees is one the writer has made, and a
//! histogram's `_count` is the sum of its buckets; its `_sum` may miss an
//! observation still being written.
//!
//! [`PerThreadVec`] is a labelled family, registered like Prometheus' `*Vec`
//! types and exposed the same way (a test compares the two expositions).
//! Hot paths resolve their children ([`Counter`], [`Gauge`], [`Histogram`])
//! once and keep them.

use crate::thread_slot;
use crossbeam_utils::CachePadded;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// A series kept in parts: what a [`PerThreadVec`] holds per label set.
pub trait Series: Send + Sync + 'static {
    const TYPE: MetricType;
    /// Writes the summed value into `metric`.
    fn fill(&self, metric: &mut proto::Metric);
}

/// How many parts of its own a series keeps: two per worker thread the
/// runtime starts by default, room for the other threads that write now and
/// then, within the slots there are. A thread whose slot is past them writes
/// the shared part.
fn owned_parts() -> usize {
    (2 * crate::workers::count(None) + 2).min(thread_slot::SLOTS)
}

/// A `T` per slot, each in a cache line of its own, then the shared one.
struct Parts<T>(Box<[CachePadded<T>]>);

/// Applies `f` to a word of a part: a plain load and store when the calling
/// thread `owns` the part (its only writer), an atomic update when the part
/// is shared.
fn update(word: &AtomicU64, owned: bool, f: impl Fn(u64) -> u64) {
    if owned {
        word.store(f(word.load(Ordering::Relaxed)), Ordering::Relaxed);
    } else {
        let _ = word.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |word| Some(f(word)));
    }
}

impl<T: Default> Parts<T> {
    fn new() -> Parts<T> {
        Parts((0..=owned_parts()).map(|_| CachePadded::new(T::default())).collect())
    }
}

impl<T> Parts<T> {
    /// This thread's part, and whether it is its only writer.
    fn mine(&self) -> (&T, bool) {
        let shared = self.0.len() - 1;
        match thread_slot::current() {
            Some(slot) if slot < shared => (&self.0[slot], true),
            _ => (&self.0[shared], false),
        }
    }

    fn all(&self) -> impl Iterator<Item = &T> {
        self.0.iter().map(|part| &**part)
    }
}

impl Parts<AtomicU64> {
    /// Adds `delta` (wrapping: a gauge adds minus one as `u64::MAX`) to this thread's part.
    fn add(&self, delta: u64) {
        let (word, owned) = self.mine();
        update(word, owned, |value| value.wrapping_add(delta));
    }

    /// The parts' sum, wrapping as the adds do.
    fn sum(&self) -> u64 {
        self.all().fold(0, |sum, part| sum.wrapping_add(part.load(Ordering::Relaxed)))
    }
}

/// A counter (`_total` series).
pub struct Counter(Parts<AtomicU64>);

impl Counter {
    fn new() -> Counter {
        Counter(Parts::new())
    }

    pub fn inc(&self) {
        self.0.add(1);
    }

    pub fn get(&self) -> u64 {
        self.0.sum()
    }
}

impl Series for Counter {
    const TYPE: MetricType = MetricType::COUNTER;

    fn fill(&self, metric: &mut proto::Metric) {
        let mut counter = proto::Counter::default();
        counter.set_value(self.get() as f64);
        metric.set_counter(counter);
    }
}

/// A gauge that goes up and down by one. A thread may take it down in
/// another part than the one that took it up: a part is a two's-complement
/// difference, and only the sum of the parts means anything.
pub struct Gauge(Parts<AtomicU64>);

impl Gauge {
    fn new() -> Gauge {
        Gauge(Parts::new())
    }

    pub fn inc(&self) {
        self.0.add(1);
    }

    pub fn dec(&self) {
        self.0.add(1u64.wrapping_neg());
    }

    pub fn get(&self) -> i64 {
        self.0.sum() as i64
    }
}

impl Series for Gauge {
    const TYPE: MetricType = MetricType::GAUGE;

    fn fill(&self, metric: &mut proto::Metric) {
        let mut gauge = proto::Gauge::default();
        gauge.set_value(self.get() as f64);
        metric.set_gauge(gauge);
    }
}

/// Most bucket bounds a [`Histogram`] takes (the host's latency buckets are 14).
pub const MAX_BOUNDS: usize = 15;

/// One part of a histogram: a count per bucket, the last for values above
/// every bound, and the sum of the values (an `f64`'s bits).
#[derive(Default)]
struct HistogramPart {
    counts: [AtomicU64; MAX_BOUNDS + 1],
    sum: AtomicU64,
}

/// A histogram with fixed bucket bounds.
pub struct Histogram {
    /// Upper bounds, ascending; values above the last count only in `+Inf`.
    bounds: &'static [f64],
    parts: Parts<HistogramPart>,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        assert!(bounds.len() <= MAX_BOUNDS, "a per-thread histogram takes at most {MAX_BOUNDS} bounds");
        assert!(bounds.is_sorted_by(|a, b| a < b), "bucket bounds ascend");
        Histogram { bounds, parts: Parts::new() }
    }

    /// Counts `value` in the first bucket whose bound is at least `value`,
    /// as Prometheus' histogram does.
    pub fn observe(&self, value: f64) {
        let bucket = self.bounds.iter().position(|bound| value <= *bound).unwrap_or(self.bounds.len());
        let (part, owned) = self.parts.mine();
        update(&part.counts[bucket], owned, |count| count + 1);
        update(&part.sum, owned, |bits| (f64::from_bits(bits) + value).to_bits());
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.parts.all().flat_map(|part| &part.counts[..=self.bounds.len()]).map(|count| count.load(Ordering::Relaxed)).sum()
    }
}

impl Series for Histogram {
    const TYPE: MetricType = MetricType::HISTOGRAM;

    fn fill(&self, metric: &mut proto::Metric) {
        let mut counts = [0u64; MAX_BOUNDS + 1];
        let mut sum = 0.0;
        for part in self.parts.all() {
            for (total, count) in counts.iter_mut().zip(&part.counts) {
                *total += count.load(Ordering::Relaxed);
            }
            sum += f64::from_bits(part.sum.load(Ordering::Relaxed));
        }
        let mut cumulative = 0;
        let buckets = self
            .bounds
            .iter()
            .zip(counts)
            .map(|(bound, count)| {
                cumulative += count;
                let mut bucket = proto::Bucket::default();
                bucket.set_cumulative_count(cumulative);
                bucket.set_upper_bound(*bound);
                bucket
            })
            .collect();
        let mut histogram = proto::Histogram::default();
        histogram.set_sample_count(cumulative + counts[self.bounds.len()]);
        histogram.set_sample_sum(sum);
        histogram.set_bucket(buckets);
        metric.set_histogram(histogram);
    }
}

/// A family of series by label values, registered as one collector.
pub struct PerThreadVec<T: Series>(Arc<Family<T>>);

impl<T: Series> Clone for PerThreadVec<T> {
    fn clone(&self) -> Self {
        PerThreadVec(self.0.clone())
    }
}

struct Family<T> {
    desc: Desc,
    /// Each label set's series, by its values in the order of the label names.
    series: RwLock<BTreeMap<Vec<String>, Arc<T>>>,
    /// Makes the series of a new label set.
    make: Box<dyn Fn() -> T + Send + Sync>,
}

impl PerThreadVec<Counter> {
    pub fn counters(name: &str, help: impl Into<String>, labels: &[&str]) -> prometheus::Result<PerThreadVec<Counter>> {
        PerThreadVec::new(name, help.into(), labels, Box::new(Counter::new))
    }
}

impl PerThreadVec<Gauge> {
    pub fn gauges(name: &str, help: impl Into<String>, labels: &[&str]) -> prometheus::Result<PerThreadVec<Gauge>> {
        PerThreadVec::new(name, help.into(), labels, Box::new(Gauge::new))
    }
}

impl PerThreadVec<Histogram> {
    /// Histograms with the bucket `bounds` (ascending, at most [`MAX_BOUNDS`]).
    pub fn histograms(
        name: &str,
        help: impl Into<String>,
        labels: &[&str],
        bounds: &'static [f64],
    ) -> prometheus::Result<PerThreadVec<Histogram>> {
        Histogram::new(bounds);
        PerThreadVec::new(name, help.into(), labels, Box::new(move || Histogram::new(bounds)))
    }
}

impl<T: Series> PerThreadVec<T> {
    fn new(name: &str, help: String, labels: &[&str], make: Box<dyn Fn() -> T + Send + Sync>) -> prometheus::Result<Self> {
        let desc = Desc::new(name.to_string(), help, labels.iter().map(|label| label.to_string()).collect(), HashMap::new())?;
        Ok(PerThreadVec(Arc::new(Family { desc, series: RwLock::new(BTreeMap::new()), make })))
    }

    /// The series of `values` (one per label name, in their order), made on first use.
    ///
    /// # Panics
    /// When the number of values is not the number of labels (a bug).
    pub fn with_label_values(&self, values: &[&str]) -> Arc<T> {
        let family = &self.0;
        assert_eq!(values.len(), family.desc.variable_labels.len(), "{}: one value per label", family.desc.fq_name);
        // Found without allocating a key: a family holds a few series (guests
        // times codes), and a status other than 200 looks its series up per request.
        let same = |key: &Vec<String>| key.iter().map(String::as_str).eq(values.iter().copied());
        if let Some((_, series)) = family.series.read().unwrap().iter().find(|(key, _)| same(key)) {
            return series.clone();
        }
        let key: Vec<String> = values.iter().map(|value| value.to_string()).collect();
        family.series.write().unwrap().entry(key).or_insert_with(|| Arc::new((family.make)())).clone()
    }
}

impl<T: Series> Collector for PerThreadVec<T> {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.0.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let family = &self.0;
        let metrics = family
            .series
            .read()
            .unwrap()
            .iter()
            .map(|(values, series)| {
                let mut labels: Vec<LabelPair> = family
                    .desc
                    .variable_labels
                    .iter()
                    .zip(values)
                    .map(|(name, value)| {
                        let mut pair = LabelPair::default();
                        pair.set_name(name.clone());
                        pair.set_value(value.clone());
                        pair
                    })
                    .collect();
                labels.sort_by(|a, b| a.name().cmp(b.name()));
                let mut metric = proto::Metric::from_label(labels);
                series.fill(&mut metric);
                metric
            })
            .collect();
        let mut out = MetricFamily::default();
        out.set_name(family.desc.fq_name.clone());
        out.set_help(family.desc.help.clone());
        out.set_field_type(T::TYPE);
        out.set_metric(metrics);
        vec![out]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

    const BOUNDS: &[f64] = &[0.001, 0.01, 0.1, 1.0];

    fn text(registry: &Registry) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&registry.gather(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_family_is_exposed_as_prometheus_own_types_expose_it() {
        let (theirs, ours) = (Registry::new(), Registry::new());
        let histograms = HistogramVec::new(HistogramOpts::new("t_seconds", "Time").buckets(BOUNDS.to_vec()), &["guest"]).unwrap();
        let counters = IntCounterVec::new(Opts::new("t_total", "Count"), &["guest", "code"]).unwrap();
        let gauges = IntGaugeVec::new(Opts::new("t_now", "Now"), &[]).unwrap();
        theirs.register(Box::new(histograms.clone())).unwrap();
        theirs.register(Box::new(counters.clone())).unwrap();
        theirs.register(Box::new(gauges.clone())).unwrap();
        let (our_histograms, our_counters, our_gauges) = (
            PerThreadVec::histograms("t_seconds", "Time", &["guest"], BOUNDS).unwrap(),
            PerThreadVec::counters("t_total", "Count", &["guest", "code"]).unwrap(),
            PerThreadVec::gauges("t_now", "Now", &[]).unwrap(),
        );
        ours.register(Box::new(our_histograms.clone())).unwrap();
        ours.register(Box::new(our_counters.clone())).unwrap();
        ours.register(Box::new(our_gauges.clone())).unwrap();

        // On a bound, between bounds, above every bound, and a series with none.
        for (guest, value) in [("prime", 0.001), ("prime", 0.05), ("prime", 7.5), ("broker", 0.0), ("broker", 1.0)] {
            histograms.with_label_values(&[guest]).observe(value);
            our_histograms.with_label_values(&[guest]).observe(value);
        }
        histograms.with_label_values(&["idle"]);
        our_histograms.with_label_values(&["idle"]);
        for (guest, code) in [("prime", "200"), ("prime", "200"), ("prime", "404"), ("broker", "200")] {
            counters.with_label_values(&[guest, code]).inc();
            our_counters.with_label_values(&[guest, code]).inc();
        }
        let gauge = gauges.with_label_values::<&str>(&[]);
        let our_gauge = our_gauges.with_label_values(&[]);
        gauge.inc();
        gauge.inc();
        gauge.dec();
        our_gauge.inc();
        our_gauge.inc();
        our_gauge.dec();

        let exposed = text(&ours);
        assert_eq!(exposed, text(&theirs));
        assert!(exposed.contains("t_seconds_bucket{guest=\"prime\",le=\"0.001\"} 1"), "{exposed}");
        assert!(exposed.contains("t_seconds_count{guest=\"prime\"} 3"), "{exposed}");
        assert!(exposed.contains("t_total{code=\"200\",guest=\"prime\"} 2"), "{exposed}");
        assert!(exposed.contains("t_now 1"), "{exposed}");
    }

    #[test]
    fn writes_from_many_threads_are_all_counted() {
        let counter = Arc::new(Counter::new());
        let gauge = Arc::new(Gauge::new());
        let histogram = Arc::new(Histogram::new(BOUNDS));
        // More threads alive at once than a series has parts of its own, so
        // that some write the shared part (on a machine of up to 11 CPUs; the
        // cap leaves slots for the other tests' threads).
        let count = (owned_parts() + 8).min(thread_slot::SLOTS / 2);
        let barrier = Arc::new(std::sync::Barrier::new(count));
        let threads: Vec<_> = (0..count)
            .map(|_| {
                let (counter, gauge, histogram, barrier) = (counter.clone(), gauge.clone(), histogram.clone(), barrier.clone());
                std::thread::spawn(move || {
                    // Every thread takes its slot, if there is one left, before any writes.
                    thread_slot::current();
                    barrier.wait();
                    for i in 0..10_000 {
                        counter.inc();
                        gauge.inc();
                        histogram.observe(if i % 2 == 0 { 0.5 } else { 2.0 });
                    }
                    gauge
                })
            })
            .collect();
        // Each thread's gauge goes down on another thread than the one that took it up.
        for thread in threads {
            let gauge = thread.join().unwrap();
            (0..10_000).for_each(|_| gauge.dec());
        }
        let writes = count as u64 * 10_000;
        assert_eq!(counter.get(), writes);
        assert_eq!(gauge.get(), 0);
        assert_eq!(histogram.count(), writes);
        let mut metric = proto::Metric::default();
        histogram.fill(&mut metric);
        let filled = metric.get_histogram();
        assert_eq!(filled.get_sample_sum(), (writes / 2) as f64 * 0.5 + (writes / 2) as f64 * 2.0);
        let cumulative: Vec<u64> = filled.get_bucket().iter().map(|bucket| bucket.cumulative_count()).collect();
        assert_eq!(cumulative, [0, 0, 0, writes / 2], "the values above 1 count only in +Inf");
    }

    #[test]
    fn a_label_set_has_one_series_however_often_it_is_asked_for() {
        let counters = PerThreadVec::counters("c_total", "C", &["a"]).unwrap();
        counters.with_label_values(&["x"]).inc();
        counters.with_label_values(&["x"]).inc();
        assert_eq!(counters.with_label_values(&["x"]).get(), 2);
        assert_eq!(counters.collect()[0].get_metric().len(), 1);
    }
}
