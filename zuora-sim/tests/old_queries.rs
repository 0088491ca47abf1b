//! The old export's thirteen queries (`common/catalogue-old-export.toml`, verbatim as the replaced system sent
//! them) against the simulator: every one is answered, with its columns named as AQuA names them, and each joined
//! value is the one reached by walking the relation through the related objects' own rows. An increment returns
//! only rows of the FROM object that changed: a renamed product alone sends no charge again, so the lake keeps
//! the name it last read, and the ground truth of the query says so.

mod support;

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use support::Api;

#[derive(serde::Deserialize)]
struct Catalogue {
    object: Vec<Object>,
}

#[derive(serde::Deserialize)]
struct Object {
    name: String,
    query: String,
}

fn old_queries() -> Vec<Object> {
    toml::from_str::<Catalogue>(include_str!("../../common/catalogue-old-export.toml")).unwrap().object
}

/// The request the old system sent: every query in one stateful job, deleted rows flagged in `IsDeleted`.
fn old_request(queries: &[&Object]) -> Value {
    let queries: Vec<Value> = queries
        .iter()
        .map(|o| {
            json!({"name": o.name, "query": o.query, "type": "zoqlexport",
                   "deleted": {"column": "IsDeleted", "format": "Boolean"}})
        })
        .collect();
    json!({"format": "csv", "version": "1.2", "name": "zuora-datalake-export", "encrypted": "none",
           "useQueryLabels": "true", "dateTimeUtc": "true", "partner": "guardian",
           "project": "zuora-datalake-export-2", "queries": queries})
}

/// The selected fields as the query writes them.
fn selected(query: &str) -> Vec<String> {
    let upper = query.to_ascii_uppercase();
    let list = &query["SELECT ".len()..upper.find(" FROM ").unwrap()];
    list.split(',').map(|f| f.trim().to_owned()).collect()
}

/// A file's rows by their `<Object>.Id`, each as header -> value.
type Rows = BTreeMap<String, HashMap<String, String>>;

fn by_id(records: &[Vec<String>], id_column: &str) -> Rows {
    let header = &records[0];
    let at = header.iter().position(|h| h == id_column).unwrap_or_else(|| panic!("no {id_column} in {header:?}"));
    records[1..]
        .iter()
        .map(|record| (record[at].clone(), header.iter().cloned().zip(record.iter().cloned()).collect()))
        .collect()
}

/// Every object's own rows now (the simulator's ground truth: every field).
struct Truth(HashMap<&'static str, Rows>);

impl Truth {
    fn read(api: &Api, objects: &[&'static str]) -> Self {
        let control = api.sim.control();
        let tables = objects.iter().map(|&object| {
            let csv = control.ground_truth_csv(object).unwrap();
            (object, by_id(&support::records(csv.as_bytes()), &format!("{object}.Id")))
        });
        Self(tables.collect())
    }

    /// Field `field` of the `object` row with this id.
    fn get(&self, object: &'static str, id: &str, field: &str) -> String {
        let row = self.0[object].get(id).unwrap_or_else(|| panic!("no {object} {id}"));
        row[&format!("{object}.{field}")].clone()
    }
}

fn is_id(value: &str) -> bool {
    value.len() == 32 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test]
async fn the_thirteen_old_queries_are_answered_with_their_columns_and_joined_values() {
    let api = Api::start(|_| {}).await;
    let queries = old_queries();
    assert_eq!(queries.len(), 13);
    let (job, files) = api.export(old_request(&queries.iter().collect::<Vec<_>>())).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(files.len(), 13);

    for (object, records) in queries.iter().zip(&files) {
        let header = &records[0];
        let fields = selected(&object.query);
        assert_eq!(header[0], format!("{}.IsDeleted", object.name), "the flag comes first");
        assert_eq!(header.len(), fields.len() + 1, "{}: {header:?}", object.name);
        for (field, name) in fields.iter().zip(&header[1..]) {
            // Canonical casing, the relation's (or the object's) name before the dot.
            let (prefix, rest) = name.split_once('.').unwrap();
            match field.split_once('.') {
                Some((relation, joined)) => {
                    assert!(
                        prefix.eq_ignore_ascii_case(relation) && rest.eq_ignore_ascii_case(joined),
                        "{field}: {name}"
                    );
                }
                None => assert!(prefix == object.name && rest.eq_ignore_ascii_case(field), "{field}: {name}"),
            }
        }
        // A full load: the live rows its filter passes (InvoiceItem's keeps those created since April 2020).
        let truth = api.sim.control().ground_truth_of(&object.query).unwrap();
        let id = format!("{}.Id", object.name);
        let want = by_id(&support::records(truth.as_bytes()), &id);
        assert_eq!(by_id(records, &id).keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "{}", object.name);
        // Every joined id of a live row is a row's id.
        for (i, name) in header.iter().enumerate().skip(1) {
            let joined_id = !name.starts_with(&format!("{}.", object.name)) && name.ends_with(".Id");
            if joined_id {
                assert!(records[1..].iter().all(|r| is_id(&r[i])), "{}: {name}", object.name);
            }
        }
    }

    // Joined values, walked by hand through the related objects' own rows.
    let truth = Truth::read(
        &api,
        &[
            "Account",
            "Subscription",
            "RatePlan",
            "RatePlanCharge",
            "ProductRatePlan",
            "ProductRatePlanCharge",
            "Product",
            "Invoice",
            "InvoiceItem",
        ],
    );
    let file = |object: &str| {
        let at = queries.iter().position(|o| o.name == object).unwrap();
        by_id(&files[at], &format!("{object}.Id"))
    };
    let charges = file("RatePlanCharge");
    assert!(charges.len() > 100);
    for (id, row) in &charges {
        let rate_plan = truth.get("RatePlanCharge", id, "RatePlanId");
        let subscription = truth.get("RatePlan", &rate_plan, "SubscriptionId");
        let account = truth.get("Subscription", &subscription, "AccountId");
        let product_rate_plan = truth.get("RatePlan", &rate_plan, "ProductRatePlanId");
        let product = truth.get("ProductRatePlan", &product_rate_plan, "ProductId");
        let product_charge = truth.get("RatePlanCharge", id, "ProductRatePlanChargeId");
        assert_eq!(row["RatePlan.Id"], rate_plan);
        assert_eq!(row["RatePlan.Name"], truth.get("RatePlan", &rate_plan, "Name"));
        assert_eq!(row["Subscription.Id"], subscription);
        assert_eq!(row["Account.Id"], account);
        assert_eq!(row["BillToContact.Id"], truth.get("Account", &account, "BillToId"));
        assert_eq!(row["ParentAccount.Id"], truth.get("Account", &account, "ParentId"));
        assert_eq!(row["Product.Id"], product);
        assert_eq!(row["Product.Name"], truth.get("Product", &product, "Name"));
        assert_eq!(row["ProductRatePlanCharge.Id"], product_charge);
        assert_eq!(
            row["ProductRatePlanCharge.BillingPeriod"],
            truth.get("ProductRatePlanCharge", &product_charge, "BillingPeriod")
        );
    }
    for (id, row) in &file("InvoiceItem") {
        let invoice = truth.get("InvoiceItem", id, "InvoiceId");
        assert_eq!(row["Invoice.Id"], invoice);
        assert_eq!(row["Account.Id"], truth.get("Invoice", &invoice, "AccountId"));
        let product = row["Product.Id"].clone();
        assert_eq!(row["Product.Name"], truth.get("Product", &product, "Name"));
        assert_eq!(row["Product.Description"], truth.get("Product", &product, "Description"));
    }
    for (id, row) in &file("Subscription") {
        let account = truth.get("Subscription", id, "AccountId");
        assert_eq!(row["Account.Id"], account);
        assert_eq!(row["SoldToContact.Id"], truth.get("Account", &account, "SoldToId"));
    }
}

#[tokio::test]
async fn a_renamed_product_alone_sends_no_charge_again_and_the_truth_keeps_the_name_the_lake_read() {
    let api = Api::start(|_| {}).await;
    let queries = old_queries();
    let charge_query = queries.iter().find(|o| o.name == "RatePlanCharge").unwrap();
    let (_, full) = api.export(old_request(&[charge_query])).await;
    let mut lake = by_id(&full[0], "RatePlanCharge.Id");
    let products_before = Truth::read(&api, &["Product"]);

    let mutate = async |object: &str, body: Value| -> Value {
        let url = api.url(&format!("/sim/objects/{object}/mutations"));
        api.http.post(url).json(&body).send().await.unwrap().json().await.unwrap()
    };
    let advance = async || {
        api.http.post(api.url("/sim/clock/advance")).json(&json!({"seconds": 60})).send().await.unwrap();
    };
    advance().await;
    mutate("Product", json!({"update": 20})).await;
    let charges = mutate("RatePlanCharge", json!({"update": 3, "delete": 2})).await;
    advance().await;
    let (job, increment) = api.export(old_request(&[charge_query])).await;
    assert_eq!(job["batches"][0]["full"], false);
    let returned = by_id(&increment[0], "RatePlanCharge.Id");

    let ids = |key: &str| -> Vec<String> {
        charges[key].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
    };
    let changed: BTreeSet<String> = ids("updated").into_iter().chain(ids("deleted")).collect();
    assert_eq!(returned.keys().cloned().collect::<BTreeSet<_>>(), changed, "only the charges that changed themselves");
    let joined: Vec<&String> = increment[0][0].iter().filter(|h| !h.starts_with("RatePlanCharge.")).collect();
    for id in ids("deleted") {
        let row = &returned[&id];
        assert_eq!(row["RatePlanCharge.IsDeleted"], "true");
        assert!(joined.iter().all(|h| row[*h].is_empty()), "a deleted row's joined fields are empty: {row:?}");
    }
    let products_now = Truth::read(&api, &["Product"]);
    for id in ids("updated") {
        let product = &returned[&id]["Product.Id"];
        assert_eq!(returned[&id]["Product.Name"], products_now.get("Product", product, "Name"));
    }

    // The lake: the full load, then the increment applied (deleted rows removed).
    for (id, row) in returned {
        if row["RatePlanCharge.IsDeleted"] == "true" {
            lake.remove(&id);
        } else {
            lake.insert(id, row);
        }
    }
    let truth = api.sim.control().ground_truth_of(&charge_query.query).unwrap();
    let truth = by_id(&support::records(truth.as_bytes()), "RatePlanCharge.Id");
    assert_eq!(truth.keys().collect::<Vec<_>>(), lake.keys().collect::<Vec<_>>());
    let mut stale = 0;
    for (id, row) in &truth {
        for (column, value) in row {
            assert_eq!(&lake[id][column], value, "{id} {column}");
        }
        let product = &row["Product.Id"];
        if row["Product.Name"] != products_now.get("Product", product, "Name") {
            assert_eq!(row["Product.Name"], products_before.get("Product", product, "Name"));
            stale += 1;
        }
    }
    assert!(stale > 0, "some unchanged charge keeps its product's old name");
}
