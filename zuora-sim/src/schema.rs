//! The simulated objects: their fields and types, their relations, and how many rows each has by default.
//! (Over 600 lines: the seventeen objects' fields, every field the old export's queries read among them, are one
//! table of data, kept together.)

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

impl FieldType {
    /// How Zuora's Describe names the type (`GET /v1/describe/{object}`).
    pub fn zuora_type(self) -> &'static str {
        match self {
            Self::Id | Self::Text | Self::Free | Self::Ref(_) | Self::User => "text",
            Self::Created | Self::Updated | Self::DateTime => "datetime",
            Self::Decimal => "decimal",
            Self::Integer => "integer",
            Self::Boolean => "boolean",
            Self::Date => "date",
        }
    }

    /// Whether every row has a value (Describe's `required`): the id and the row's history.
    pub fn required(self) -> bool {
        matches!(self, Self::Id | Self::Created | Self::Updated)
    }
}

/// One field.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// Canonical name.
    pub name: &'static str,
    /// Type.
    pub ty: FieldType,
}

/// How a relation of an object reaches the related row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    /// Through a reference field of this object (`RatePlanId`).
    Field(&'static str),
    /// Through a link Zuora keeps without a field of its own (a journal entry, a payment method snapshot, a
    /// product rate plan charge): the related object, simulated or not.
    Link(&'static str),
    /// The relation of the same name of the row reached through this relation (a charge's `Account` is its
    /// rate plan's `Account`, which is its subscription's).
    Via(&'static str),
}

/// A relation, named as queries write it before the dot (`Account.Id`, `BillToContact.Id`).
#[derive(Debug, Clone, Copy)]
pub struct Relation {
    /// Canonical name.
    pub name: &'static str,
    /// How it is reached.
    pub hop: Hop,
}

/// One object.
#[derive(Debug, Clone)]
pub struct ObjectSchema {
    /// Canonical name.
    pub name: &'static str,
    /// Fields, `Id` first.
    pub fields: Vec<Field>,
    /// Relations besides the implicit ones (a reference field `<Name>Id` is the relation `<Name>`).
    pub relations: Vec<Relation>,
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

    /// The relation named `name`, case-insensitively: a declared one, or the reference field `<name>Id`.
    pub fn relation(&self, name: &str) -> Option<Relation> {
        if let Some(relation) = self.relations.iter().find(|r| r.name.eq_ignore_ascii_case(name)) {
            return Some(*relation);
        }
        let field = self.fields.iter().find(|f| {
            matches!(f.ty, FieldType::Ref(_))
                && f.name.len() == name.len() + 2
                && f.name[..name.len()].eq_ignore_ascii_case(name)
                && f.name.ends_with("Id")
        })?;
        Some(Relation { name: &field.name[..name.len()], hop: Hop::Field(field.name) })
    }
}

use FieldType::{Boolean as B, Date as Dt, DateTime as DT, Decimal as D, Free as F, Integer as I, Ref as R, Text as T};
use Hop::{Field as Fd, Link as L, Via as V};

/// An object in the table below: name, default rows, deleted support, its own fields, its declared relations.
type ObjectRow = (&'static str, u64, bool, &'static [(&'static str, FieldType)], &'static [(&'static str, Hop)]);

/// What every account-owned object reaches through its account.
const THROUGH_ACCOUNT: [(&str, Hop); 4] = [
    ("BillToContact", V("Account")),
    ("SoldToContact", V("Account")),
    ("DefaultPaymentMethod", V("Account")),
    ("ParentAccount", V("Account")),
];

/// Every simulated object, without custom fields.
pub fn objects() -> Vec<ObjectSchema> {
    objects_with(&std::collections::BTreeMap::new())
}

/// The old export's custom fields (`__c`), the simulator's default tenant customisation.
pub fn default_custom_fields() -> std::collections::BTreeMap<String, Vec<String>> {
    let fields: [(&str, &[&str]); 3] = [
        ("Account", &["IdentityId__c", "sfContactId__c", "ProcessingAdvice__c"]),
        ("RatePlanCharge", &["HolidayStart__c", "HolidayEnd__c", "ForceSync__c"]),
        (
            "Subscription",
            &[
                "CancellationReason__c",
                "IPCountry__c",
                "InitialPromotionCode__c",
                "PromotionCode__c",
                "ReaderType__c",
                "AcquisitionCase__c",
                "AcquisitionSource__c",
                "ActivationDate__c",
                "CanadaHandDelivery__c",
                "CASSubscriberID__c",
                "CreatedByCSR__c",
                "CreatedRequestId__c",
                "Gift_Subscription__c",
                "IPAddress__c",
                "LastPriceChangeDate__c",
                "legacy_cat__c",
                "LegacyContractStartDate__c",
                "RedemptionCode__c",
                "GifteeIdentityId__c",
                "GiftRedemptionDate__c",
                "GiftNotificationEmailDate__c",
            ],
        ),
    ];
    fields
        .into_iter()
        .map(|(object, names)| (object.to_owned(), names.iter().map(|&n| n.to_owned()).collect()))
        .collect()
}

/// A custom field's name for the life of the process: each distinct name is kept once.
fn intern(name: &str) -> &'static str {
    static NAMES: std::sync::OnceLock<std::sync::Mutex<std::collections::BTreeSet<&'static str>>> =
        std::sync::OnceLock::new();
    let mut names = NAMES.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(known) = names.get(name) {
        return known;
    }
    let kept: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(kept);
    kept
}

/// Every simulated object, with these custom fields (text) added to their objects.
pub fn objects_with(custom: &std::collections::BTreeMap<String, Vec<String>>) -> Vec<ObjectSchema> {
    let table: [ObjectRow; 17] = [
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
                ("LastInvoiceDate", Dt),
                ("MRR", D),
                ("CrmId", T),
                ("BillToId", R("Contact")),
                ("SoldToId", R("Contact")),
                ("DefaultPaymentMethodId", R("PaymentMethod")),
                ("ParentId", R("Account")),
            ],
            &[("BillToContact", Fd("BillToId")), ("SoldToContact", Fd("SoldToId")), ("ParentAccount", Fd("ParentId"))],
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
                ("Address2", T),
                ("State", T),
                ("PostalCode", T),
            ],
            &[],
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
                ("BankTransferType", T),
                ("CreditCardExpirationMonth", I),
                ("CreditCardExpirationYear", I),
                ("LastFailedSaleTransactionDate", DT),
                ("LastTransactionStatus", T),
                ("Name", T),
                ("NumConsecutiveFailures", I),
                ("MandateID", T),
                ("PaypalBAID", T),
                ("SecondTokenID", T),
                ("TokenID", T),
                ("Active", B),
                ("Country", T),
                ("CreditCardType", T),
                ("DeviceSessionId", T),
                ("IdentityNumber", T),
                ("MandateCreationDate", Dt),
                ("MandateReceived", T),
                ("MandateUpdateDate", Dt),
                ("MaxConsecutivePaymentFailures", I),
                ("PaymentRetryWindow", I),
                ("TotalNumberOfErrorPayments", I),
                ("TotalNumberOfProcessedPayments", I),
                ("UseDefaultRetryRule", B),
            ],
            &[],
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
                ("ContractAcceptanceDate", Dt),
                ("ContractEffectiveDate", Dt),
                ("TermStartDate", Dt),
                ("ServiceActivationDate", Dt),
                ("CancelledDate", Dt),
                ("CreatorAccountId", R("Account")),
                ("CreatorInvoiceOwnerId", R("Account")),
                ("CurrentTerm", I),
                ("CurrentTermPeriodType", T),
                ("InitialTerm", I),
                ("InitialTermPeriodType", T),
                ("InvoiceOwnerId", R("Account")),
                ("IsInvoiceSeparate", B),
            ],
            &[
                THROUGH_ACCOUNT[0],
                THROUGH_ACCOUNT[1],
                THROUGH_ACCOUNT[2],
                THROUGH_ACCOUNT[3],
                ("SubscriptionVersionAmendment", L("Amendment")),
            ],
        ),
        (
            "RatePlan",
            350,
            true,
            &[
                ("SubscriptionId", R("Subscription")),
                ("Name", T),
                ("AmendmentType", T),
                ("AmendmentId", R("Amendment")),
                ("ProductRatePlanId", R("ProductRatePlan")),
            ],
            &[
                ("Account", V("Subscription")),
                THROUGH_ACCOUNT[0],
                THROUGH_ACCOUNT[1],
                THROUGH_ACCOUNT[2],
                THROUGH_ACCOUNT[3],
                ("SubscriptionVersionAmendment", V("Subscription")),
                ("Product", V("ProductRatePlan")),
            ],
        ),
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
                ("Version", I),
                ("BillingPeriod", T),
                ("ProcessedThroughDate", Dt),
                ("ChargedThroughDate", Dt),
                ("AccountingCode", T),
                ("ApplyDiscountTo", T),
                ("BillCycleDay", I),
                ("BillCycleType", T),
                ("BillingPeriodAlignment", T),
                ("BillingTiming", T),
                ("ChargeNumber", T),
                ("DiscountLevel", T),
                ("DTCV", D),
                ("IsLastSegment", B),
                ("ListPriceBase", T),
                ("NumberOfPeriods", I),
                ("OriginalId", R("RatePlanCharge")),
                ("OverageCalculationOption", T),
                ("OverageUnusedUnitsCreditOption", T),
                ("PriceChangeOption", T),
                ("PriceIncreasePercentage", D),
                ("RatingGroup", T),
                ("RevenueRecognitionRuleName", T),
                ("RevRecCode", T),
                ("RevRecTriggerCondition", T),
                ("Segment", I),
                ("SpecificBillingPeriod", I),
                ("SpecificEndDate", Dt),
                ("TriggerDate", Dt),
                ("TriggerEvent", T),
                ("UOM", T),
                ("UpToPeriods", I),
                ("UpToPeriodsType", T),
                ("WeeklyBillCycleDay", T),
                ("ProductRatePlanChargeId", R("ProductRatePlanCharge")),
            ],
            &[
                ("Subscription", V("RatePlan")),
                ("Account", V("RatePlan")),
                ("Amendment", V("RatePlan")),
                ("ProductRatePlan", V("RatePlan")),
                ("Product", V("RatePlan")),
                THROUGH_ACCOUNT[0],
                THROUGH_ACCOUNT[1],
                THROUGH_ACCOUNT[2],
                THROUGH_ACCOUNT[3],
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
                ("DiscountAmount", D),
                ("DiscountPercentage", D),
                ("IncludedUnits", D),
                ("OveragePrice", D),
                ("PriceFormat", T),
            ],
            &[
                ("RatePlan", V("RatePlanCharge")),
                ("Subscription", V("RatePlanCharge")),
                ("Amendment", V("RatePlanCharge")),
                ("Product", V("RatePlanCharge")),
                ("ProductRatePlan", V("RatePlanCharge")),
                ("ProductRatePlanCharge", V("RatePlanCharge")),
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
                ("AutoRenew", B),
                ("Code", T),
                ("CurrentTerm", I),
                ("CurrentTermPeriodType", T),
                ("CustomerAcceptanceDate", Dt),
                ("RenewalSetting", T),
                ("RenewalTerm", I),
                ("RenewalTermPeriodType", T),
                ("ResumeDate", Dt),
                ("ServiceActivationDate", Dt),
                ("SpecificUpdateDate", Dt),
                ("SuspendDate", Dt),
                ("TermStartDate", Dt),
                ("TermType", T),
                ("ContractEffectiveDate", Dt),
            ],
            &[("Account", V("Subscription"))],
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
                ("AdjustmentAmount", D),
                ("AmountWithoutTax", D),
                ("AutoPay", B),
                ("CreditBalanceAdjustmentAmount", D),
                ("IncludesOneTime", B),
                ("IncludesRecurring", B),
                ("IncludesUsage", B),
                ("LastEmailSentDate", DT),
                ("PaymentAmount", D),
                ("PostedBy", FieldType::User),
                ("PostedDate", DT),
                ("RefundAmount", D),
                ("Source", T),
                ("SourceId", T),
                ("TargetDate", Dt),
                ("TaxAmount", D),
                ("TaxExemptAmount", D),
                ("TransferredToAccounting", T),
                ("Reversed", B),
            ],
            &[
                THROUGH_ACCOUNT[0],
                THROUGH_ACCOUNT[1],
                THROUGH_ACCOUNT[2],
                THROUGH_ACCOUNT[3],
                ("BillToContactSnapshot", L("ContactSnapshot")),
                ("SoldToContactSnapshot", L("ContactSnapshot")),
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
                ("Currency", T),
                ("Gateway", T),
                ("GatewayResponse", T),
                ("GatewayResponseCode", T),
                ("GatewayState", T),
                ("SubmittedOn", DT),
                ("AccountingCode", T),
                ("AppliedAmount", D),
                ("AppliedCreditBalanceAmount", D),
                ("AuthTransactionId", T),
                ("BankIdentificationNumber", T),
                ("CancelledOn", DT),
                ("GatewayOrderId", T),
                ("MarkedForSubmissionOn", DT),
                ("ReferencedPaymentID", T),
                ("ReferenceId", T),
                ("RefundAmount", D),
                ("SecondPaymentReferenceId", T),
                ("SettledOn", DT),
                ("SoftDescriptor", T),
                ("SoftDescriptorPhone", T),
                ("Source", T),
                ("SourceName", T),
                ("TransferredToAccounting", T),
                ("UnappliedAmount", D),
                ("PaymentMethodId", R("PaymentMethod")),
            ],
            &[
                THROUGH_ACCOUNT[0],
                THROUGH_ACCOUNT[1],
                THROUGH_ACCOUNT[2],
                THROUGH_ACCOUNT[3],
                ("PaymentMethodSnapshot", L("PaymentMethodSnapshot")),
            ],
        ),
        (
            "InvoicePayment",
            400,
            true,
            &[("InvoiceId", R("Invoice")), ("PaymentId", R("Payment")), ("Amount", D), ("RefundAmount", D)],
            &[
                ("Account", V("Invoice")),
                THROUGH_ACCOUNT[0],
                THROUGH_ACCOUNT[1],
                THROUGH_ACCOUNT[2],
                THROUGH_ACCOUNT[3],
                ("PaymentMethod", V("Payment")),
                ("PaymentMethodSnapshot", V("Payment")),
                ("AccountingPeriod", L("AccountingPeriod")),
                ("JournalEntry", L("JournalEntry")),
                ("JournalRun", L("JournalRun")),
            ],
        ),
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
                ("AccountingCode", T),
                ("CancelledOn", DT),
                ("Gateway", T),
                ("GatewayResponse", T),
                ("GatewayResponseCode", T),
                ("GatewayState", T),
                ("MarkedForSubmissionOn", DT),
                ("MethodType", T),
                ("PaymentMethodId", R("PaymentMethod")),
                ("ReasonCode", T),
                ("ReferenceID", T),
                ("RefundTransactionTime", DT),
                ("SecondRefundReferenceId", T),
                ("SettledOn", DT),
                ("SoftDescriptor", T),
                ("SoftDescriptorPhone", T),
                ("SourceType", T),
                ("SubmittedOn", DT),
                ("TransferredToAccounting", T),
            ],
            &[
                THROUGH_ACCOUNT[0],
                THROUGH_ACCOUNT[1],
                THROUGH_ACCOUNT[2],
                THROUGH_ACCOUNT[3],
                ("PaymentMethodSnapshot", L("PaymentMethodSnapshot")),
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
                ("AccountingCode", T),
                ("AppliedToInvoiceItemId", R("InvoiceItem")),
                ("ChargeDate", DT),
                ("ProcessingType", T),
                ("RevRecStartDate", Dt),
                ("SKU", T),
                ("TaxCode", T),
                ("TaxExemptAmount", D),
                ("TaxMode", T),
                ("UnitPrice", D),
                ("Balance", D),
                ("RatePlanChargeId", R("RatePlanCharge")),
            ],
            &[
                ("Account", V("Invoice")),
                THROUGH_ACCOUNT[0],
                THROUGH_ACCOUNT[1],
                THROUGH_ACCOUNT[2],
                THROUGH_ACCOUNT[3],
                ("BillToContactSnapshot", V("Invoice")),
                ("RatePlan", V("RatePlanCharge")),
                ("Amendment", V("RatePlanCharge")),
                ("Product", V("RatePlanCharge")),
                ("ProductRatePlan", V("RatePlanCharge")),
                ("ProductRatePlanCharge", V("RatePlanCharge")),
                ("AccountingPeriod", L("AccountingPeriod")),
                ("DeferredRevenueAccountingCode", L("AccountingCode")),
                ("JournalEntry", L("JournalEntry")),
                ("JournalRun", L("JournalRun")),
            ],
        ),
        (
            "AccountingPeriod",
            24,
            false,
            &[("Name", T), ("StartDate", Dt), ("EndDate", Dt), ("Status", T), ("FiscalYear", I)],
            &[],
        ),
        (
            "Product",
            20,
            true,
            &[
                ("Name", T),
                ("SKU", T),
                ("Description", F),
                ("Category", T),
                ("EffectiveStartDate", Dt),
                ("EffectiveEndDate", Dt),
            ],
            &[],
        ),
        (
            "ProductRatePlan",
            40,
            true,
            &[
                ("ProductId", R("Product")),
                ("Name", T),
                ("Description", F),
                ("EffectiveStartDate", Dt),
                ("EffectiveEndDate", Dt),
            ],
            &[],
        ),
        (
            "ProductRatePlanCharge",
            80,
            true,
            &[
                ("ProductRatePlanId", R("ProductRatePlan")),
                ("Name", T),
                ("BillingPeriod", T),
                ("ChargeModel", T),
                ("ChargeType", T),
                ("UOM", T),
                ("Description", F),
            ],
            &[("Product", V("ProductRatePlan"))],
        ),
    ];
    table
        .into_iter()
        .map(|(name, default_rows, deleted_supported, own, relations)| {
            let mut fields = vec![
                Field { name: "Id", ty: FieldType::Id },
                Field { name: "CreatedDate", ty: FieldType::Created },
                Field { name: "UpdatedDate", ty: FieldType::Updated },
                Field { name: "CreatedById", ty: FieldType::User },
                Field { name: "UpdatedById", ty: FieldType::User },
            ];
            fields.extend(own.iter().map(|&(name, ty)| Field { name, ty }));
            let customised = custom.iter().filter(|(object, _)| object.eq_ignore_ascii_case(name));
            fields.extend(customised.flat_map(|(_, names)| names).map(|n| Field { name: intern(n), ty: T }));
            let relations = relations.iter().map(|&(name, hop)| Relation { name, hop }).collect();
            ObjectSchema { name, fields, relations, deleted_supported, default_rows }
        })
        .collect()
}

/// One step from a row to a related row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The reference field (an index) of `object`, to a row of `target`.
    Ref {
        /// Where the step starts.
        object: &'static str,
        /// The field.
        field: usize,
        /// The referenced object.
        target: &'static str,
    },
    /// The link `relation` of `object`, to a row of `target`.
    Link {
        /// Where the step starts.
        object: &'static str,
        /// The relation.
        relation: &'static str,
        /// The linked object, simulated or not.
        target: &'static str,
    },
}

/// Where a relation leads from a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// The relation's canonical name.
    pub relation: &'static str,
    /// From the row to the related row.
    pub steps: Vec<Step>,
    /// The related object (simulated, or only an id Zuora keeps).
    pub target: &'static str,
}

/// Relations followed through at most this many others (the deepest, a tier's `BillToContact`, takes five).
const MAX_HOPS: usize = 8;

/// The path of `relation` (any case) from `object`'s rows, among `schemas`; `None` if the object has no such
/// relation.
pub fn path(schemas: &[std::sync::Arc<ObjectSchema>], object: &ObjectSchema, relation: &str) -> Option<Path> {
    walk(schemas, object, relation, 0)
}

fn walk(schemas: &[std::sync::Arc<ObjectSchema>], object: &ObjectSchema, relation: &str, hops: usize) -> Option<Path> {
    if hops > MAX_HOPS {
        return None;
    }
    let found = object.relation(relation)?;
    let (steps, target) = match found.hop {
        Hop::Field(name) => {
            let field = object.field(name)?;
            let FieldType::Ref(target) = object.fields[field].ty else { return None };
            (vec![Step::Ref { object: object.name, field, target }], target)
        }
        Hop::Link(target) => (vec![Step::Link { object: object.name, relation: found.name, target }], target),
        Hop::Via(through) => {
            let first = walk(schemas, object, through, hops + 1)?;
            let middle = schemas.iter().find(|s| s.name == first.target)?;
            let rest = walk(schemas, middle, found.name, hops + 1)?;
            (first.steps.into_iter().chain(rest.steps).collect(), rest.target)
        }
    };
    Some(Path { relation: found.name, steps, target })
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
    fn every_declared_relation_leads_somewhere_and_implicit_ones_follow_their_field() {
        let all: Vec<std::sync::Arc<ObjectSchema>> = objects().into_iter().map(std::sync::Arc::new).collect();
        for object in &all {
            for relation in &object.relations {
                let path = path(&all, object, relation.name);
                assert!(path.is_some(), "{}.{} leads nowhere", object.name, relation.name);
            }
        }
        let charge = all.iter().find(|o| o.name == "RatePlanCharge").unwrap();
        let account = path(&all, charge, "account").unwrap();
        assert_eq!((account.relation, account.target, account.steps.len()), ("Account", "Account", 3));
        let bill_to = path(&all, charge, "BILLTOCONTACT").unwrap();
        assert_eq!((bill_to.relation, bill_to.target, bill_to.steps.len()), ("BillToContact", "Contact", 4));
        assert_eq!(path(&all, charge, "RatePlan").unwrap().steps.len(), 1);
        assert!(path(&all, charge, "Invoice").is_none());
        assert!(path(&all, charge, "Name").is_none(), "a field that is not a reference is no relation");
    }

    #[test]
    fn custom_fields_join_their_object_as_text_and_only_theirs() {
        let custom = default_custom_fields();
        let all = objects_with(&custom);
        let account = all.iter().find(|o| o.name == "Account").unwrap();
        let field = account.field("identityid__c").expect("a custom field, any case");
        assert_eq!((account.fields[field].name, account.fields[field].ty), ("IdentityId__c", FieldType::Text));
        assert!(all.iter().find(|o| o.name == "Contact").unwrap().field("IdentityId__c").is_none());
        assert!(objects().iter().all(|o| o.fields.iter().all(|f| !f.name.ends_with("__c"))));
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
