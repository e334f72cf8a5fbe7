//! vcontainer host driver.
