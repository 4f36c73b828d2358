//! The enums the store keeps in `TEXT` columns, by their wire names: the
//! hook (`order-select`), the card indicator (`warning`) and the feedback
//! outcome (`accepted`).
//!
//! They are encoded and decoded here, once, on both backends, so rows are
//! bound and read as the typed values. A stored name that no variant has is
//! a decode error, never a default: a row the code cannot read is a fault
//! to see, not a card to miscount.

use super::FeedbackOutcome;
use crate::cds::{Hook, Indicator};
use serde::de::IntoDeserializer;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Encode, Type};

/// A value stored as its name.
trait StoredName: Sized {
    /// What the value is, for the decode error.
    const WHAT: &'static str;

    /// The name stored.
    fn name(&self) -> Result<String, BoxDynError>;

    /// The value stored as `name`, if any.
    fn from_name(name: &str) -> Option<Self>;
}

impl StoredName for Hook {
    const WHAT: &'static str = "hook";

    fn name(&self) -> Result<String, BoxDynError> {
        Ok(self.as_str().to_string())
    }

    fn from_name(name: &str) -> Option<Hook> {
        Hook::parse(name)
    }
}

impl StoredName for FeedbackOutcome {
    const WHAT: &'static str = "feedback outcome";

    fn name(&self) -> Result<String, BoxDynError> {
        Ok(self.as_str().to_string())
    }

    fn from_name(name: &str) -> Option<FeedbackOutcome> {
        FeedbackOutcome::parse(name)
    }
}

/// The indicator's name is the one serde gives it on the wire, so the card
/// and its card log row cannot spell it differently.
impl StoredName for Indicator {
    const WHAT: &'static str = "indicator";

    fn name(&self) -> Result<String, BoxDynError> {
        match serde_json::to_value(self)? {
            serde_json::Value::String(name) => Ok(name),
            other => Err(format!("an indicator serialized as {other}, not a name").into()),
        }
    }

    fn from_name(name: &str) -> Option<Indicator> {
        let name: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
            name.into_deserializer();
        serde::Deserialize::deserialize(name).ok()
    }
}

/// `Type`, `Encode` and `Decode` for [`StoredName`] types: `TEXT` on every
/// backend. (A blanket impl over the trait is not allowed for sqlx's traits.)
macro_rules! text_column {
    ($($ty:ty),*) => {$(
        impl<DB: Database> Type<DB> for $ty
        where
            String: Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <String as Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <String as Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: Database> Encode<'q, DB> for $ty
        where
            String: Encode<'q, DB>,
        {
            fn encode_by_ref(&self, buf: &mut DB::ArgumentBuffer) -> Result<IsNull, BoxDynError> {
                self.name()?.encode(buf)
            }
        }

        impl<'r, DB: Database> Decode<'r, DB> for $ty
        where
            &'r str: Decode<'r, DB>,
        {
            fn decode(value: DB::ValueRef<'r>) -> Result<Self, BoxDynError> {
                let name = <&str as Decode<'r, DB>>::decode(value)?;
                <$ty>::from_name(name).ok_or_else(|| {
                    format!("{name:?} is not a stored {}", <$ty>::WHAT).into()
                })
            }
        }
    )*};
}

text_column!(Hook, Indicator, FeedbackOutcome);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CardLogEntry, Store, on_pool};
    use time::OffsetDateTime;

    fn names<T: StoredName>(values: &[T]) -> Vec<String> {
        values.iter().map(|value| value.name().unwrap()).collect()
    }

    fn round_trips<T: StoredName + PartialEq + std::fmt::Debug>(values: &[T]) {
        for value in values {
            assert_eq!(T::from_name(&value.name().unwrap()).as_ref(), Some(value));
        }
    }

    /// The names are those the store held before these types were decoded:
    /// old rows must keep reading.
    #[test]
    fn the_stored_names_are_the_wire_names() {
        let indicators = [Indicator::Info, Indicator::Warning, Indicator::Critical];
        assert_eq!(names(&indicators), ["info", "warning", "critical"]);
        assert_eq!(
            names(&Hook::ALL),
            ["patient-view", "order-select", "order-sign"]
        );
        assert_eq!(names(&FeedbackOutcome::ALL), ["accepted", "overridden"]);
        round_trips(&indicators);
        round_trips(&Hook::ALL);
        round_trips(&FeedbackOutcome::ALL);
        assert_eq!(Indicator::from_name("Warning"), None);
    }

    fn entry(card: &str) -> CardLogEntry {
        CardLogEntry {
            card_uuid: card.into(),
            service: "deprescribing-order-select".into(),
            family: "deprescribing".into(),
            hook: Hook::OrderSelect,
            hook_instance: "hi".into(),
            rule_id: "r".into(),
            rule_version: "1.0.0".into(),
            suggestion_uuids: vec![],
            patient_hash: "p".into(),
            encounter_hash: None,
            draft_order_hash: None,
            indicator: Indicator::Critical,
            issued_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[tokio::test]
    async fn rows_are_stored_as_names_and_read_back_typed() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        store.insert_card_log(&[entry("c1")]).await.unwrap();
        let stored: (String, String) = on_pool!(store, pool => sqlx::query_as(
            "SELECT hook, indicator FROM card_log"
        ).fetch_one(pool).await.unwrap());
        assert_eq!(stored, ("order-select".into(), "critical".into()));
        assert_eq!(store.card_log_for("c1").await.unwrap(), [entry("c1")]);
    }

    #[tokio::test]
    async fn an_unknown_stored_name_is_a_decode_error() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        store.insert_card_log(&[entry("c1")]).await.unwrap();
        store
            .execute_raw("UPDATE card_log SET indicator = 'urgent'")
            .await;
        let error = store.card_log_for("c1").await.unwrap_err().to_string();
        assert!(
            error.contains("\"urgent\" is not a stored indicator"),
            "{error}"
        );
        store
            .execute_raw(
                "INSERT INTO feedback (id, service, card_uuid, outcome, outcome_at, unknown_card, received_at) \
                 VALUES ('f1', 's', 'c1', 'maybe', 0, false, 0)",
            )
            .await;
        let error = store.feedback_rows(None, None, false).await.unwrap_err();
        assert!(
            error
                .to_string()
                .contains("\"maybe\" is not a stored feedback outcome"),
            "{error}"
        );
    }
}
