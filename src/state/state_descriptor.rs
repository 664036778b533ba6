//! State descriptors (Flink's `StateDescriptor`s): a keyed state's name, unique within its
//! operator, and its types; the reducing and aggregating ones carry their functions. Each is
//! a `const`, as a Flink user declares descriptors once per function. `with_ttl` gives a
//! state a time-to-live (Flink's `enableTimeToLive`).

use crate::state::state_ttl::StateTtlConfig;
use std::marker::PhantomData;

/// Names a `ValueState<T>`.
pub struct ValueStateDescriptor<T> {
    /// The state's name, unique within its operator.
    pub name: &'static str,
    /// Its time-to-live, if any.
    pub ttl: Option<StateTtlConfig>,
    marker: PhantomData<fn() -> T>,
}

/// Names a `ListState<T>`.
pub struct ListStateDescriptor<T> {
    /// The state's name, unique within its operator.
    pub name: &'static str,
    /// Its time-to-live, if any.
    pub ttl: Option<StateTtlConfig>,
    marker: PhantomData<fn() -> T>,
}

/// Names a `MapState<K, V>`.
pub struct MapStateDescriptor<K, V> {
    /// The state's name, unique within its operator.
    pub name: &'static str,
    /// Its time-to-live (per entry), if any.
    pub ttl: Option<StateTtlConfig>,
    marker: PhantomData<fn() -> (K, V)>,
}

/// Names a `ReducingState<T>` and its `ReduceFunction`: each value added is reduced with the
/// value held.
pub struct ReducingStateDescriptor<T> {
    /// The state's name, unique within its operator.
    pub name: &'static str,
    /// `ReduceFunction.reduce(held, added)`.
    pub reduce: fn(T, T) -> T,
    /// Its time-to-live, if any.
    pub ttl: Option<StateTtlConfig>,
}

/// Names an `AggregatingState<IN, OUT>` and its `AggregateFunction` over an accumulator
/// `ACC`, which is what the state holds (and snapshots).
pub struct AggregatingStateDescriptor<IN, ACC, OUT> {
    /// The state's name, unique within its operator.
    pub name: &'static str,
    /// `AggregateFunction.createAccumulator()`.
    pub create_accumulator: fn() -> ACC,
    /// `AggregateFunction.add(value, accumulator)`.
    pub add: fn(&IN, ACC) -> ACC,
    /// `AggregateFunction.getResult(accumulator)`.
    pub get_result: fn(&ACC) -> OUT,
    /// Its time-to-live, if any.
    pub ttl: Option<StateTtlConfig>,
}

impl<T> ValueStateDescriptor<T> {
    /// A descriptor for the value state called `name`.
    pub const fn new(name: &'static str) -> Self {
        ValueStateDescriptor {
            name,
            ttl: None,
            marker: PhantomData,
        }
    }

    /// `enableTimeToLive(config)`.
    pub const fn with_ttl(mut self, config: StateTtlConfig) -> Self {
        self.ttl = Some(config);
        self
    }
}

impl<T> ListStateDescriptor<T> {
    /// A descriptor for the list state called `name`.
    pub const fn new(name: &'static str) -> Self {
        ListStateDescriptor {
            name,
            ttl: None,
            marker: PhantomData,
        }
    }

    /// `enableTimeToLive(config)`.
    pub const fn with_ttl(mut self, config: StateTtlConfig) -> Self {
        self.ttl = Some(config);
        self
    }
}

impl<K, V> MapStateDescriptor<K, V> {
    /// A descriptor for the map state called `name`.
    pub const fn new(name: &'static str) -> Self {
        MapStateDescriptor {
            name,
            ttl: None,
            marker: PhantomData,
        }
    }

    /// `enableTimeToLive(config)`.
    pub const fn with_ttl(mut self, config: StateTtlConfig) -> Self {
        self.ttl = Some(config);
        self
    }
}

impl<T> ReducingStateDescriptor<T> {
    /// A descriptor for the reducing state called `name`, reducing with `reduce`.
    pub const fn new(name: &'static str, reduce: fn(T, T) -> T) -> Self {
        ReducingStateDescriptor {
            name,
            reduce,
            ttl: None,
        }
    }

    /// `enableTimeToLive(config)`.
    pub const fn with_ttl(mut self, config: StateTtlConfig) -> Self {
        self.ttl = Some(config);
        self
    }
}

impl<IN, ACC, OUT> AggregatingStateDescriptor<IN, ACC, OUT> {
    /// A descriptor for the aggregating state called `name`, with the aggregate function's
    /// three parts.
    pub const fn new(
        name: &'static str,
        create_accumulator: fn() -> ACC,
        add: fn(&IN, ACC) -> ACC,
        get_result: fn(&ACC) -> OUT,
    ) -> Self {
        AggregatingStateDescriptor {
            name,
            create_accumulator,
            add,
            get_result,
            ttl: None,
        }
    }

    /// `enableTimeToLive(config)`.
    pub const fn with_ttl(mut self, config: StateTtlConfig) -> Self {
        self.ttl = Some(config);
        self
    }
}
