//! A published file's schema (docs/messages.md, "The file's schema"): its header's columns typed from Zuora's
//! Describe of the objects they come from, asked once per object and process, and again when a file names a field
//! the answer kept did not list (a custom field added since).

use common::catalogue::ObjectSpec;
use common::messages::{DeletedColumn, FileSchema};
use common::zuora::{
    DeletedFormat, Described, ZuoraClient, ZuoraError, is_deleted_flag, relations_named, typed_columns,
};
use std::collections::{HashMap, HashSet};
use tokio::sync::Mutex;
use tracing::warn;

/// Describe's answers kept by this process, by lower-case object name; `None` for a name Zuora does not describe
/// (a relation that is not an object of its own, `BillToContact`).
#[derive(Default)]
pub struct Schemas {
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    described: HashMap<String, Option<Described>>,
    /// Objects asked again for a field their answer lacked: not asked again for it (a field Describe never lists
    /// would otherwise cost a call per file).
    asked_again: HashSet<String>,
}

impl Schemas {
    /// The schema of a file of `object` whose header is `header`. A Zuora failure worth retrying is returned (the
    /// job message comes back); any other answer leaves the columns of that object typed `text`, with a warning.
    pub async fn of_file(
        &self,
        zuora: &ZuoraClient,
        object: &ObjectSpec,
        header: &[String],
    ) -> Result<FileSchema, ZuoraError> {
        let mut kept = self.kept.lock().await;
        let deleted = object.deleted_column.as_deref();
        for relation in relations_named(&object.name, header) {
            let (known, lacking) = match kept.described.get(&relation) {
                Some(answer) => (true, names_a_field_not_in(answer.as_ref(), &relation, header, &object.name, deleted)),
                None => (false, false),
            };
            if known && !(lacking && kept.asked_again.insert(relation.clone())) {
                continue;
            }
            let answer = match zuora.describe(&relation).await {
                Ok(answer) => answer,
                Err(e) if e.is_retryable() => return Err(e),
                Err(e) => {
                    warn!(object = %object.name, relation = %relation, error = %e,
                          "Zuora did not describe the object; its columns are typed text");
                    None
                }
            };
            kept.described.insert(relation, answer);
        }
        let answers: HashMap<String, Described> =
            kept.described.iter().filter_map(|(name, answer)| Some((name.clone(), answer.clone()?))).collect();
        Ok(FileSchema {
            columns: typed_columns(&object.name, header, deleted, &answers),
            id_column: common::merge::column(object, "Id"),
            deleted: deleted.map(|column| DeletedColumn {
                column: common::merge::column(object, column),
                format: DeletedFormat::Boolean,
            }),
            time_zone: zuora.config().data_center.zone_name().to_owned(),
        })
    }
}

/// Whether `header` names a field of `relation` that the kept answer does not list: not an id, nor the exported
/// `object`'s deleted flag, which Describe never lists.
fn names_a_field_not_in(
    answer: Option<&Described>,
    relation: &str,
    header: &[String],
    object: &str,
    deleted: Option<&str>,
) -> bool {
    let Some(answer) = answer else { return false };
    header.iter().filter_map(|name| name.split_once('.')).any(|(r, field)| {
        r.eq_ignore_ascii_case(relation)
            && !field.eq_ignore_ascii_case("id")
            && !is_deleted_flag(object, deleted, r, field)
            && answer.field(field).is_none()
    })
}
