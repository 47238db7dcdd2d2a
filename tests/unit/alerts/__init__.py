"""Alert rules, their evaluation and SLO burn rates (pipeline/alerts): pure, no Kafka."""
