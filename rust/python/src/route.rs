//! `Condition`: a `where` expression on its own, to check it against single items. Used by
//! tests (differential checks against a reference evaluator) and by users trying a condition.

use ddbshard_core::route::expr::Condition as CoreCondition;
use ddbshard_core::{parse_item, parse_value, Error, Shape, Value};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors;

#[pyclass(module = "ddbshard._core", frozen)]
pub struct Condition {
    inner: CoreCondition,
}

#[pymethods]
impl Condition {
    /// `names`: "#n" → attribute name; `values`: ":v" → DynamoDB-JSON text of one value.
    #[new]
    #[pyo3(signature = (text, names = None, values = None))]
    fn new(
        py: Python<'_>,
        text: &str,
        names: Option<&Bound<'_, PyDict>>,
        values: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let mut name_pairs = Vec::new();
        if let Some(d) = names {
            for (k, v) in d.iter() {
                name_pairs.push((k.extract::<String>()?, v.extract::<String>()?));
            }
        }
        let mut value_pairs: Vec<(String, Value<'static>)> = Vec::new();
        if let Some(d) = values {
            for (k, v) in d.iter() {
                let key: String = k.extract()?;
                let text: String = v.extract()?;
                let value = parse_value(&text).map_err(|e| errors::parse_error(py, &e))?;
                value_pairs.push((key, value.into_owned()));
            }
        }
        let inner = CoreCondition::parse(text, &name_pairs, &value_pairs)
            .map_err(|e| errors::to_py(py, Error::Config(e.to_string())))?;
        Ok(Condition { inner })
    }

    /// Whether the item (an export line or a bare attribute map) satisfies the condition.
    fn matches(&self, py: Python<'_>, item: &[u8]) -> PyResult<bool> {
        let map = parse_item(item, Shape::Any).map_err(|e| errors::parse_error(py, &e))?;
        Ok(self.inner.eval(&map))
    }
}
