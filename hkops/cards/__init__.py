"""SIM cards: vendor card-data files, the card inventory tables, batch import."""
