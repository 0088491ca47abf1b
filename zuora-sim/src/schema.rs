//! The simulated objects: their fields and types, and how many rows each has by default.

/// How a field's values look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// The row's own 32-hex id.
    Id,
    /// When the row was created (from the row's history).
    Created,
    /// When the row last changed (from the row's history).
    Updated,
    /// A short realistic string.
    Text,
    /// Free text that stresses CSV: commas, quotes, newlines, non-ASCII, nulls.
    Free,
    /// A bare decimal.
    Decimal,
    /// An integer.
    Integer,
    /// `true` / `false`.
    Boolean,
    /// `yyyy-MM-dd`.
    Date,
    /// `yyyy-MM-ddTHH:mm:ss+0000`.
    DateTime,
    /// The id of a row of another object.
    Ref(&'static str),
    /// The id of a user.
    User,
}

/// One field.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// Canonical name.
    pub name: &'static str,
    /// Type.
    pub ty: FieldType,
}

/// One object.
#[derive(Debug, Clone)]
pub struct ObjectSchema {
    /// Canonical name.
    pub name: &'static str,
    /// Fields, `Id` first.
    pub fields: Vec<Field>,
    /// Whether the object can export deleted records.
    pub deleted_supported: bool,
    /// Rows unless configured otherwise.
    pub default_rows: u64,
}

impl ObjectSchema {
    /// The field named `name`, case-insensitively.
    pub fn field(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name.eq_ignore_ascii_case(name))
    }
}

use FieldType::{Boolean as B, Date as Dt, DateTime as DT, Decimal as D, Free as F, Integer as I, Ref as R, Text as T};

/// An object in the table below: name, default rows, deleted support, its own fields.
type ObjectRow = (&'static str, u64, bool, &'static [(&'static str, FieldType)]);

/// Every simulated object.
pub fn objects() -> Vec<ObjectSchema> {
    let table: [ObjectRow; 14] = [
        (
            "Account",
            200,
            true,
            &[
                ("AccountNumber", T),
                ("Name", T),
                ("Balance", D),
                ("Currency", T),
                ("Status", T),
                ("AutoPay", B),
                ("BillCycleDay", I),
                ("Notes", F),
            ],
        ),
        (
            "Contact",
            250,
            true,
            &[
                ("AccountId", R("Account")),
                ("FirstName", T),
                ("LastName", T),
                ("WorkEmail", T),
                ("Country", T),
                ("City", T),
                ("Address1", F),
            ],
        ),
        (
            "PaymentMethod",
            200,
            true,
            &[
                ("AccountId", R("Account")),
                ("Type", T),
                ("CreditCardMaskNumber", T),
                ("PaymentMethodStatus", T),
                ("LastTransactionDateTime", DT),
            ],
        ),
        (
            "Subscription",
            300,
            true,
            &[
                ("AccountId", R("Account")),
                ("Name", T),
                ("Status", T),
                ("TermType", T),
                ("SubscriptionStartDate", Dt),
                ("TermEndDate", Dt),
                ("AutoRenew", B),
                ("Version", I),
                ("Notes", F),
            ],
        ),
        ("RatePlan", 350, true, &[("SubscriptionId", R("Subscription")), ("Name", T), ("AmendmentType", T)]),
        (
            "RatePlanCharge",
            400,
            true,
            &[
                ("RatePlanId", R("RatePlan")),
                ("Name", T),
                ("ChargeModel", T),
                ("ChargeType", T),
                ("EffectiveStartDate", Dt),
                ("EffectiveEndDate", Dt),
                ("MRR", D),
                ("TCV", D),
                ("Quantity", D),
                ("Description", F),
            ],
        ),
        (
            "RatePlanChargeTier",
            400,
            true,
            &[
                ("RatePlanChargeId", R("RatePlanCharge")),
                ("Tier", I),
                ("StartingUnit", D),
                ("EndingUnit", D),
                ("Price", D),
                ("Currency", T),
            ],
        ),
        (
            "Amendment",
            150,
            true,
            &[
                ("SubscriptionId", R("Subscription")),
                ("Name", T),
                ("Type", T),
                ("Status", T),
                ("EffectiveDate", Dt),
                ("Description", F),
            ],
        ),
        (
            "Invoice",
            500,
            true,
            &[
                ("AccountId", R("Account")),
                ("InvoiceNumber", T),
                ("InvoiceDate", Dt),
                ("DueDate", Dt),
                ("Amount", D),
                ("Balance", D),
                ("Status", T),
                ("Comments", F),
            ],
        ),
        (
            "Payment",
            400,
            true,
            &[
                ("AccountId", R("Account")),
                ("PaymentNumber", T),
                ("Amount", D),
                ("EffectiveDate", Dt),
                ("Status", T),
                ("Type", T),
                ("Comment", F),
            ],
        ),
        ("InvoicePayment", 400, true, &[("InvoiceId", R("Invoice")), ("PaymentId", R("Payment")), ("Amount", D)]),
        (
            "Refund",
            50,
            true,
            &[
                ("AccountId", R("Account")),
                ("RefundNumber", T),
                ("Amount", D),
                ("RefundDate", Dt),
                ("Status", T),
                ("Type", T),
                ("Comment", F),
            ],
        ),
        (
            "InvoiceItem",
            800,
            true,
            &[
                ("InvoiceId", R("Invoice")),
                ("SubscriptionId", R("Subscription")),
                ("ChargeName", T),
                ("ChargeAmount", D),
                ("TaxAmount", D),
                ("ServiceStartDate", Dt),
                ("ServiceEndDate", Dt),
                ("Quantity", D),
                ("UOM", T),
            ],
        ),
        (
            "AccountingPeriod",
            24,
            false,
            &[("Name", T), ("StartDate", Dt), ("EndDate", Dt), ("Status", T), ("FiscalYear", I)],
        ),
    ];
    table
        .into_iter()
        .map(|(name, default_rows, deleted_supported, own)| {
            let mut fields = vec![
                Field { name: "Id", ty: FieldType::Id },
                Field { name: "CreatedDate", ty: FieldType::Created },
                Field { name: "UpdatedDate", ty: FieldType::Updated },
                Field { name: "CreatedById", ty: FieldType::User },
                Field { name: "UpdatedById", ty: FieldType::User },
            ];
            fields.extend(own.iter().map(|&(name, ty)| Field { name, ty }));
            ObjectSchema { name, fields, deleted_supported, default_rows }
        })
        .collect()
}

/// `AccountNumber` -> `Account Number`, `AccountId` -> `Account ID`, `MRR` -> `MRR`: Zuora's label style.
pub fn label(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        let starts_word = i > 0
            && c.is_ascii_uppercase()
            && (chars[i - 1].is_ascii_lowercase() || chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase()));
        if starts_word {
            out.push(' ');
        }
        out.push(c);
    }
    out.split(' ').map(|w| if w == "Id" { "ID" } else { w }).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_split_words_and_spell_id_in_capitals() {
        assert_eq!(label("AccountNumber"), "Account Number");
        assert_eq!(label("AccountId"), "Account ID");
        assert_eq!(label("Id"), "ID");
        assert_eq!(label("RatePlanCharge"), "Rate Plan Charge");
        assert_eq!(label("MRR"), "MRR");
        assert_eq!(label("UOM"), "UOM");
    }

    #[test]
    fn every_reference_points_at_a_known_object() {
        let all = objects();
        for object in &all {
            for field in &object.fields {
                if let FieldType::Ref(target) = field.ty {
                    assert!(all.iter().any(|o| o.name == target), "{}.{} -> {target}", object.name, field.name);
                }
            }
        }
    }
}
