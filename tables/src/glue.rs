//! Each table registered in the AWS Glue Data Catalog, so that Athena, and Spark or Trino on EMR, find it by name.
//! The entry is a native Delta Lake table: its location and `table_type = DELTA`, no columns. Athena reads the
//! schema from the table's own log at query time, so a column the table gains needs no catalog update
//! ([Athena: querying Delta Lake tables](https://docs.aws.amazon.com/athena/latest/ug/delta-lake-tables.html)).

use crate::error::ApplyError;
use aws_sdk_glue::error::DisplayErrorContext;
use aws_sdk_glue::types::{StorageDescriptor, TableInput};
use common::aws::AwsConfig;

/// A Glue database the writer registers its tables in.
#[derive(Debug, Clone)]
pub struct GlueCatalog {
    client: aws_sdk_glue::Client,
    database: String,
}

impl GlueCatalog {
    /// The database `database` of the account and region of `aws` (a local server's endpoint when it names one).
    pub async fn new(aws: &AwsConfig, database: &str) -> Self {
        let sdk = aws.load().await;
        Self { client: aws_sdk_glue::Client::new(&sdk), database: database.to_owned() }
    }

    /// The name of `object`'s table in the catalog: Glue keeps names in lower case.
    pub fn table_name(object: &str) -> String {
        object.to_ascii_lowercase()
    }

    /// Registers `object`'s Delta table at `location` (`s3://...`) unless an entry of that name exists. Returns
    /// whether it created the entry.
    pub async fn register(&self, object: &str, location: &str) -> Result<bool, ApplyError> {
        let name = Self::table_name(object);
        let looked = self.client.get_table().database_name(&self.database).name(&name).send().await;
        match looked {
            Ok(_) => return Ok(false),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_entity_not_found_exception()) => {}
            Err(e) => return Err(self.failed("GetTable", &name, e)),
        }
        let table = TableInput::builder()
            .name(&name)
            .description(format!("Zuora {object}, merged by zuora-lake-export's table writer"))
            .table_type("EXTERNAL_TABLE")
            .parameters("table_type", "DELTA")
            .parameters("EXTERNAL", "TRUE")
            .parameters("spark.sql.sources.provider", "delta")
            .storage_descriptor(StorageDescriptor::builder().location(location).build())
            .build()
            .map_err(|e| self.failed("CreateTable", &name, e))?;
        match self.client.create_table().database_name(&self.database).table_input(table).send().await {
            Ok(_) => Ok(true),
            // Registered meanwhile (another writer, or an operator).
            Err(e) if e.as_service_error().is_some_and(|e| e.is_already_exists_exception()) => Ok(false),
            Err(e) => Err(self.failed("CreateTable", &name, e)),
        }
    }

    fn failed(&self, operation: &str, name: &str, e: impl std::error::Error) -> ApplyError {
        ApplyError::table(format!("Glue {operation} {}.{name}: {}", self.database, DisplayErrorContext(e)))
    }
}
