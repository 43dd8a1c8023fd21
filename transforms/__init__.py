"""Pure, testable logic of lab2fab: readers, normalisation, expectations, SQL, the model."""
