"""The catalogue: SIM products, plans (套餐) and prices per agent level."""
